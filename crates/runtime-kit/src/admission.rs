//! Connection slots shared fairly between peers: at most [`Slots::total`] connections, at most
//! [`Slots::per_peer`] of them from one address, so that one host on the LAN holding every
//! slot it can get still leaves the others in; and a few more slots only this machine
//! (127.0.0.1, ::1) may use, so that a container's own health check gets through a flood.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// How many connections, and from whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    /// Open connections at most (this machine gets [`Slots::local_reserve`] more).
    pub total: usize,
    /// Open connections from one address at most (this machine's own are not limited so).
    pub per_peer: usize,
    /// Extra slots only 127.0.0.1 and ::1 may use.
    pub local_reserve: usize,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is taken.
    Full,
    /// This peer holds its share already.
    PeerFull,
}

/// The slots of one server. Clones share them.
#[derive(Debug, Clone)]
pub struct Admission {
    slots: Slots,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    open: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// An admitted connection's slot, given back when dropped.
#[derive(Debug)]
pub struct Ticket {
    state: Arc<Mutex<State>>,
    peer: IpAddr,
}

impl Admission {
    /// Empty slots.
    pub fn new(slots: Slots) -> Self {
        Admission {
            slots,
            state: Arc::default(),
        }
    }

    /// A slot for a connection from `peer`, or why not.
    pub fn admit(&self, peer: IpAddr) -> Result<Ticket, Refusal> {
        let local = is_local(peer);
        let mut state = self.lock();
        let limit = self.slots.total + if local { self.slots.local_reserve } else { 0 };
        if state.open >= limit {
            return Err(Refusal::Full);
        }
        let held = state.by_peer.entry(peer).or_insert(0);
        if !local && *held >= self.slots.per_peer {
            return Err(Refusal::PeerFull);
        }
        *held += 1;
        state.open += 1;
        Ok(Ticket {
            state: Arc::clone(&self.state),
            peer,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// Connections open now from `peer`.
    pub fn open_from(&self, peer: IpAddr) -> usize {
        self.lock().by_peer.get(&peer).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.open = state.open.saturating_sub(1);
        if let Some(held) = state.by_peer.get_mut(&self.peer) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                state.by_peer.remove(&self.peer);
            }
        }
    }
}

/// 127.0.0.1 or ::1 (not all of 127/8: a test or a local proxy may use other addresses).
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip == Ipv4Addr::LOCALHOST,
        IpAddr::V6(ip) => ip.is_loopback() || ip.to_ipv4_mapped() == Some(Ipv4Addr::LOCALHOST),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    const SLOTS: Slots = Slots {
        total: 4,
        per_peer: 2,
        local_reserve: 1,
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_peer_gets_its_share_and_the_others_the_rest() {
        let admission = Admission::new(SLOTS);
        let a = [
            admission.admit(ip("10.0.0.2")),
            admission.admit(ip("10.0.0.2")),
        ];
        assert!(a.iter().all(Result::is_ok));
        assert_eq!(
            admission.admit(ip("10.0.0.2")).unwrap_err(),
            Refusal::PeerFull
        );
        let b = [
            admission.admit(ip("10.0.0.3")),
            admission.admit(ip("10.0.0.3")),
        ];
        assert!(b.iter().all(Result::is_ok));
        assert_eq!(admission.admit(ip("10.0.0.4")).unwrap_err(), Refusal::Full);
        assert!(
            admission.admit(ip("127.0.0.1")).is_ok(),
            "the local reserve"
        );
        drop(a);
        assert_eq!(
            admission.open(),
            2,
            "the reserve's ticket went with the temporary"
        );
        assert_eq!(
            admission.open_from(ip("10.0.0.2")),
            0,
            "slots come back on drop"
        );
        assert!(admission.admit(ip("10.0.0.2")).is_ok());
    }

    #[test]
    fn this_machine_is_not_limited_to_a_share() {
        let admission = Admission::new(SLOTS);
        let local: Vec<_> = (0..5).map(|_| admission.admit(ip("::1"))).collect();
        assert!(local.iter().all(Result::is_ok), "4 slots and the reserve");
        assert_eq!(admission.admit(ip("::1")).unwrap_err(), Refusal::Full);
        assert!(is_local(ip("::ffff:127.0.0.1")) && !is_local(ip("127.0.0.2")));
    }
}
