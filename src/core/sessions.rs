//! The sessions homed on one shard, found by key or by client id: the two indexes change
//! together, so a client id never names a session that is gone.

use ahash::AHashMap;
use bytestring::ByteString;

use super::session::Session;

/// A session on this shard, numbered by the registry.
pub type SessionKey = u64;

#[derive(Debug, Default)]
pub struct Sessions {
    /// Boxed: a hash table holds its values in place, so unboxed the table's spare capacity
    /// cost a session's size per empty slot.
    by_key: AHashMap<SessionKey, Box<Session>>,
    by_client_id: AHashMap<ByteString, SessionKey>,
    last_key: SessionKey,
}

impl Sessions {
    /// Registers a new session under its client id, which must not have one yet.
    pub fn create(&mut self, session: Session) -> SessionKey {
        debug_assert!(!self.by_client_id.contains_key(&session.client_id));
        self.last_key += 1;
        let key = self.last_key;
        self.by_client_id.insert(session.client_id.clone(), key);
        self.by_key.insert(key, Box::new(session));
        key
    }

    /// Takes a session out of both indexes.
    pub fn remove(&mut self, key: &SessionKey) -> Option<Box<Session>> {
        let session = self.by_key.remove(key)?;
        self.by_client_id.remove(&session.client_id);
        Some(session)
    }

    pub fn key_of(&self, client_id: &str) -> Option<SessionKey> {
        self.by_client_id.get(client_id).copied()
    }

    pub fn get(&self, key: &SessionKey) -> Option<&Session> {
        self.by_key.get(key).map(|s| &**s)
    }

    pub fn get_mut(&mut self, key: &SessionKey) -> Option<&mut Session> {
        self.by_key.get_mut(key).map(|s| &mut **s)
    }

    pub fn contains_key(&self, key: &SessionKey) -> bool {
        self.by_key.contains_key(key)
    }

    pub fn values(&self) -> impl Iterator<Item = &Session> {
        self.by_key.values().map(|s| &**s)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Entries of the client id index (equal to [`Sessions::len`] unless a bug broke them).
    pub fn client_ids(&self) -> usize {
        self.by_client_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_indexes_change_together() {
        let mut sessions = Sessions::default();
        let a = sessions.create(Session::new("a".into(), 0));
        let b = sessions.create(Session::new("b".into(), 0));
        assert_ne!(a, b);
        assert_eq!(sessions.key_of("a"), Some(a));
        assert_eq!(sessions.get(&b).map(|s| &*s.client_id), Some("b"));
        assert_eq!(sessions.remove(&a).map(|s| s.client_id), Some("a".into()));
        assert_eq!(sessions.key_of("a"), None);
        assert!(sessions.remove(&a).is_none());
        assert_eq!((sessions.len(), sessions.client_ids()), (1, 1));
        // A client id freed is taken again under a new key.
        let again = sessions.create(Session::new("a".into(), 0));
        assert!(again != a && again != b);
    }
}
