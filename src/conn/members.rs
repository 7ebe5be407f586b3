//! The connections a broadcast goes to: a server's clients, or a group's
//! members.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::connection::Connection;

/// Connections by id, in the order they connected (ids grow), with the
/// list a broadcast sends to made again only after a change.
///
/// A broadcast sends outside the lock that guards the set, so it takes a
/// list of its own. Copied out for every broadcast, that list was a
/// reference-count increment and decrement per client per message (5% of
/// a 1,000-client broadcast's time); members change far less often than
/// broadcasts go out.
#[derive(Default)]
pub struct Members {
    by_id: BTreeMap<u64, Arc<Connection>>,
    /// What [`list`](Self::list) gave since the last change.
    listed: Option<Arc<[Arc<Connection>]>>,
}

impl Members {
    /// Adds `connection`; false if it was a member already.
    pub fn insert(&mut self, connection: &Arc<Connection>) -> bool {
        if self.by_id.contains_key(&connection.id) {
            return false;
        }
        self.by_id.insert(connection.id, Arc::clone(connection));
        self.listed = None;
        true
    }

    /// Takes the connection `id` out; false if it was not a member.
    pub fn remove(&mut self, id: u64) -> bool {
        let removed = self.by_id.remove(&id).is_some();
        if removed {
            self.listed = None;
        }
        removed
    }

    pub fn contains(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The members, in the order they connected, shared until the next
    /// change.
    pub fn list(&mut self) -> Arc<[Arc<Connection>]> {
        let by_id = &self.by_id;
        Arc::clone(
            self.listed
                .get_or_insert_with(|| by_id.values().cloned().collect()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Role;

    #[test]
    fn the_list_is_shared_until_the_members_change() {
        let (a, _) = Connection::new(Role::Server);
        let (b, _) = Connection::new(Role::Server);
        let mut members = Members::default();
        assert!(members.insert(&a));
        assert!(!members.insert(&a), "a member already");
        let first = members.list();
        assert!(Arc::ptr_eq(&first, &members.list()));
        assert!(members.insert(&b));
        let ids = |list: &[Arc<Connection>]| list.iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(ids(&members.list()), [a.id, b.id]);
        assert_eq!(ids(&first), [a.id], "a list taken before stays as it was");
        assert!(members.remove(a.id));
        assert!(!members.remove(a.id));
        assert_eq!(ids(&members.list()), [b.id]);
        assert!(members.contains(b.id) && !members.contains(a.id));
    }
}
