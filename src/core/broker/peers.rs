//! What the shell knows of a connection's far end: its address (the client's own behind a
//! PROXY-protocol load balancer), for the log lines about it, and the identity its TLS client
//! certificate proves (`use_identity_as_username`), which stands in for its user name.

use std::net::SocketAddr;

use ahash::AHashMap;
use bytestring::ByteString;

use super::{Broker, ConnId};

#[derive(Debug, Default)]
pub(super) struct Peers {
    addrs: AHashMap<ConnId, SocketAddr>,
    identities: AHashMap<ConnId, ByteString>,
}

impl Peers {
    pub fn addr(&self, id: ConnId) -> Option<SocketAddr> {
        self.addrs.get(&id).copied()
    }

    pub fn identity(&self, id: ConnId) -> Option<&ByteString> {
        self.identities.get(&id)
    }

    pub fn remove(&mut self, id: ConnId) {
        self.addrs.remove(&id);
        self.identities.remove(&id);
    }
}

impl Broker {
    /// Where connection `id` comes from.
    pub fn set_peer(&mut self, id: ConnId, addr: SocketAddr) {
        if self.conns.contains_key(&id) {
            self.peers.addrs.insert(id, addr);
        }
    }

    /// The user name connection `id`'s certificate proves: its CONNECT's user name is replaced
    /// by it and no password is asked for. An empty one (no certificate, no Common Name) is
    /// refused at CONNECT.
    pub fn set_identity(&mut self, id: ConnId, identity: String) {
        if self.conns.contains_key(&id) {
            self.peers.identities.insert(id, ByteString::from(identity));
        }
    }
}
