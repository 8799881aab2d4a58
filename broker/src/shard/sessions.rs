//! The sessions a shard holds, by client id.
//!
//! A `HashMap<ByteStr, Box<SessionSlot>>` would keep a second copy of every client id as its
//! key (32 bytes a bucket, with the buckets a map keeps spare: about 55 bytes per connection),
//! though each slot already holds its id. This table finds slots by the id inside them.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use protocol::ByteStr;

use crate::shard::SessionSlot;

/// Session slots keyed by their own `state.client_id`.
#[derive(Debug, Default)]
pub struct SessionMap {
    table: HashTable<Box<SessionSlot>>,
    /// Seeded per map, as `HashMap`'s is: client ids are chosen by clients.
    hasher: RandomState,
}

impl SessionMap {
    fn hash(&self, client_id: &str) -> u64 {
        self.hasher.hash_one(client_id)
    }

    /// The slot of `client_id`.
    pub fn get(&self, client_id: &str) -> Option<&SessionSlot> {
        let hash = self.hash(client_id);
        self.table
            .find(hash, |slot| &*slot.state.client_id == client_id)
            .map(|slot| &**slot)
    }

    /// The slot of `client_id`, to change.
    pub fn get_mut(&mut self, client_id: &str) -> Option<&mut SessionSlot> {
        let hash = self.hash(client_id);
        self.table
            .find_mut(hash, |slot| &*slot.state.client_id == client_id)
            .map(|slot| &mut **slot)
    }

    /// True when `client_id` has a slot here.
    pub fn contains_key(&self, client_id: &str) -> bool {
        self.get(client_id).is_some()
    }

    /// Adds `slot` under its client id; returns the slot it replaced.
    pub fn insert(&mut self, slot: Box<SessionSlot>) -> Option<Box<SessionSlot>> {
        let hash = self.hash(&slot.state.client_id);
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |old| old.state.client_id == slot.state.client_id,
            |old| hasher.hash_one(&*old.state.client_id),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut old) => {
                Some(std::mem::replace(old.get_mut(), slot))
            }
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                vacant.insert(slot);
                None
            }
        }
    }

    /// Takes the slot of `client_id` out.
    pub fn remove(&mut self, client_id: &str) -> Option<Box<SessionSlot>> {
        let hash = self.hash(client_id);
        self.table
            .find_entry(hash, |slot| &*slot.state.client_id == client_id)
            .ok()
            .map(|entry| entry.remove().0)
    }

    /// How many sessions are held.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when none are.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Every slot, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &SessionSlot> {
        self.table.iter().map(|slot| &**slot)
    }

    /// Every slot with its client id, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&ByteStr, &SessionSlot)> {
        self.values().map(|slot| (&slot.state.client_id, slot))
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::{
        security::{ClientAccess, Identity, Policy},
        session::SessionState,
    };

    fn slot(client_id: &str, expiry: u32) -> Box<SessionSlot> {
        let id = ByteStr::from(client_id);
        Box::new(SessionSlot {
            state: SessionState::new(id.clone(), expiry),
            link: None,
            access: Rc::new(ClientAccess::new(
                &Policy::default(),
                0,
                Identity::Anonymous,
                id,
            )),
            persisted: false,
            claim: 0,
        })
    }

    #[test]
    fn slots_are_found_by_the_id_they_hold() {
        let mut map = SessionMap::default();
        assert!(map.is_empty());
        for n in 0..100 {
            assert!(map.insert(slot(&format!("v-{n}"), 1)).is_none());
        }
        assert_eq!(map.len(), 100);
        assert!(map.contains_key("v-42") && !map.contains_key("v-100"));
        if let Some(s) = map.get_mut("v-42") {
            s.state.expiry_interval = 7;
        }
        assert_eq!(map.get("v-42").map(|s| s.state.expiry_interval), Some(7));

        // A second slot for an id replaces the first and hands it back.
        let old = map.insert(slot("v-42", 9));
        assert_eq!(old.map(|s| s.state.expiry_interval), Some(7));
        assert_eq!(map.get("v-42").map(|s| s.state.expiry_interval), Some(9));
        assert_eq!(map.len(), 100);

        let removed = map.remove("v-7");
        assert_eq!(
            removed.map(|s| s.state.client_id),
            Some(ByteStr::from("v-7"))
        );
        assert!(map.remove("v-7").is_none());
        assert_eq!(map.len(), 99);
        let mut ids: Vec<String> = map.iter().map(|(id, _)| id.to_string()).collect();
        ids.sort();
        assert_eq!(ids.len(), 99);
        assert!(!ids.contains(&"v-7".to_string()) && ids.contains(&"v-99".to_string()));
        assert!(map.iter().all(|(id, slot)| *id == slot.state.client_id));
    }
}
