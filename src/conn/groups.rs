//! Named groups of a server's connections, for broadcasts to some clients
//! only: a chat room, the subscribers of one ticker symbol.
//!
//! A group exists while it has a member. A connection that closes leaves
//! every group it was in ([`Groups::leave_all`]), so a broadcast never keeps
//! a closed socket alive. The [`Broker`](super::broker::Broker) subscribes
//! to a group's channel while the group exists here.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::broadcast::broadcast;
use super::connection::Connection;
use super::members::Members;

/// What a change of membership did, so that the caller tells the broker
/// only when the set of groups changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing: already a member, or not one.
    None,
    /// The group gained or lost a member and still exists.
    Members,
    /// The group was made by its first member, or ended with its last.
    Groups,
}

#[derive(Default)]
struct Membership {
    /// Group name -> its members, in the order they connected, so a
    /// broadcast reaches them in a stable order.
    groups: HashMap<String, Members>,
    /// Connection id -> the groups it is in, so that a closing connection
    /// leaves them without a scan of every group.
    of: HashMap<u64, HashSet<String>>,
}

/// The groups of one server.
#[derive(Default)]
pub struct Groups {
    membership: Mutex<Membership>,
}

impl Groups {
    fn lock(&self) -> MutexGuard<'_, Membership> {
        self.membership.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `connection` to `group`, unless `still_open` (asked under the
    /// groups' lock) says it has left the server: a join racing with the
    /// connection's end would otherwise leave a member that no
    /// [`leave_all`](Self::leave_all) comes to remove.
    pub fn join(
        &self,
        connection: &Arc<Connection>,
        group: &str,
        still_open: impl FnOnce() -> bool,
    ) -> Change {
        let mut membership = self.lock();
        if !still_open() {
            return Change::None;
        }
        let (members, made) = match membership.groups.entry(group.to_string()) {
            Entry::Occupied(e) => (e.into_mut(), false),
            Entry::Vacant(e) => (e.insert(Members::default()), true),
        };
        if !members.insert(connection) {
            return Change::None;
        }
        membership
            .of
            .entry(connection.id)
            .or_default()
            .insert(group.to_string());
        if made {
            Change::Groups
        } else {
            Change::Members
        }
    }

    /// Takes the connection `id` out of `group`.
    pub fn leave(&self, id: u64, group: &str) -> Change {
        let mut membership = self.lock();
        let Some(members) = membership.groups.get_mut(group) else {
            return Change::None;
        };
        if !members.remove(id) {
            return Change::None;
        }
        let ended = members.is_empty();
        if ended {
            membership.groups.remove(group);
        }
        if let Entry::Occupied(mut e) = membership.of.entry(id) {
            e.get_mut().remove(group);
            if e.get().is_empty() {
                e.remove();
            }
        }
        if ended {
            Change::Groups
        } else {
            Change::Members
        }
    }

    /// Takes the connection `id` out of every group, as it closes; says
    /// whether a group ended with it.
    pub fn leave_all(&self, id: u64) -> Change {
        let mut membership = self.lock();
        let Some(names) = membership.of.remove(&id) else {
            return Change::None;
        };
        let mut change = Change::Members;
        for name in names {
            if let Entry::Occupied(mut members) = membership.groups.entry(name) {
                members.get_mut().remove(id);
                if members.get().is_empty() {
                    members.remove();
                    change = Change::Groups;
                }
            }
        }
        change
    }

    /// The names of the groups that have members.
    pub fn names(&self) -> HashSet<String> {
        self.lock().groups.keys().cloned().collect()
    }

    /// The members of `group`, in the order they connected.
    pub fn members(&self, group: &str) -> Arc<[Arc<Connection>]> {
        self.lock()
            .groups
            .get_mut(group)
            .map_or_else(|| Arc::new([]), Members::list)
    }

    /// Sends a message to the members of `group`, framed once; returns how
    /// many took it. Sent to the members' list, so that the lock is not
    /// held while sending.
    pub fn broadcast(&self, group: &str, text: bool, payload: &Bytes) -> usize {
        broadcast(self.members(group).iter(), text, payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Role;

    fn connection() -> Arc<Connection> {
        Connection::new(Role::Server).0
    }

    #[test]
    fn the_first_member_makes_a_group_and_the_last_ends_it() {
        let groups = Groups::default();
        let (a, b) = (connection(), connection());
        assert_eq!(groups.join(&a, "room", || true), Change::Groups);
        assert_eq!(groups.join(&b, "room", || true), Change::Members);
        assert_eq!(groups.join(&b, "room", || true), Change::None);
        assert_eq!(groups.members("room").len(), 2);
        assert_eq!(groups.leave(a.id, "room"), Change::Members);
        assert_eq!(groups.leave(a.id, "room"), Change::None);
        assert_eq!(groups.leave(b.id, "room"), Change::Groups);
        assert!(groups.names().is_empty());
        assert!(groups.members("room").is_empty());
    }

    #[test]
    fn a_closed_connection_leaves_every_group() {
        let groups = Groups::default();
        let (a, b) = (connection(), connection());
        groups.join(&a, "one", || true);
        groups.join(&a, "two", || true);
        groups.join(&b, "two", || true);
        assert_eq!(groups.leave_all(a.id), Change::Groups);
        assert_eq!(groups.names(), HashSet::from(["two".to_string()]));
        assert_eq!(groups.leave_all(a.id), Change::None);
        assert_eq!(groups.leave_all(b.id), Change::Groups);
        assert!(groups.names().is_empty());
    }

    #[test]
    fn a_connection_that_has_left_the_server_joins_nothing() {
        let groups = Groups::default();
        assert_eq!(groups.join(&connection(), "room", || false), Change::None);
        assert!(groups.names().is_empty());
    }
}
