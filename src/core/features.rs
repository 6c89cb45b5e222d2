//! What the broker offers MQTT 5.0 clients: each capability is advertised in CONNACK exactly as
//! it is enforced.

use crate::protocol::QoS;

/// How a shared subscription group picks the member for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SharedPolicy {
    /// Members in turn: even load.
    #[default]
    RoundRobin,
    /// The same member for all messages of one publisher: its order holds.
    Publisher,
}

#[derive(Debug, Clone)]
pub struct Features {
    pub max_qos: QoS,
    pub retain_available: bool,
    pub wildcard_subscriptions: bool,
    pub subscription_identifiers: bool,
    pub shared_subscriptions: bool,
    /// Topic aliases a client may set towards us (0: none).
    pub topic_alias_maximum: u16,
    /// QoS 2 messages a client may have awaiting PUBREL at once.
    pub receive_maximum: u16,
    /// Longest keep alive granted, in seconds (0: whatever the client asks).
    pub max_keep_alive: u16,
    pub shared_policy: SharedPolicy,
    /// Sessions belong to user names: the client id is replaced by the user name, and
    /// clients without one are refused (Mosquitto's `use_username_as_clientid`).
    pub use_username_as_clientid: bool,
}

impl Default for Features {
    fn default() -> Self {
        Features::DEFAULT
    }
}

impl Features {
    /// The defaults, which the command line's defaults are too.
    pub const DEFAULT: Features = Features {
        max_qos: QoS::ExactlyOnce,
        retain_available: true,
        wildcard_subscriptions: true,
        subscription_identifiers: true,
        shared_subscriptions: true,
        topic_alias_maximum: 64,
        receive_maximum: 1024,
        max_keep_alive: 0,
        shared_policy: SharedPolicy::RoundRobin,
        use_username_as_clientid: false,
    };
}
