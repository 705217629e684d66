//! Failed logins, counted per username and per client address, with
//! exponential lockouts.
//!
//! Each key may fail a few times for free; every failure after that locks
//! it for twice as long as the one before (capped), and a key that has not
//! failed for a while is forgotten. While a key is locked, attempts are
//! refused before any password is checked, so guessing costs the server
//! nothing. Unknown usernames are counted exactly like known ones, so the
//! answers do not tell which accounts exist.
//!
//! Both tables are bounded LRU maps: a flood of new usernames or addresses
//! evicts the keys that failed longest ago, and memory stays constant.

use hashlink::LruCache;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How failed logins are throttled.
#[derive(Debug, Clone)]
pub struct ThrottleLimits {
    /// Failures one username may have before lockouts start.
    pub user_failures: u32,
    /// Failures one client address may have before lockouts start; higher,
    /// because an office behind NAT shares one address.
    pub address_failures: u32,
    /// The first lockout; each further failure doubles it.
    pub first_lockout: Duration,
    /// The longest lockout.
    pub max_lockout: Duration,
    /// A key that has not failed for this long starts afresh.
    pub forget_after: Duration,
    /// Keys remembered per table (usernames, addresses); the least recently
    /// used are forgotten first.
    pub max_entries: usize,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        Self {
            user_failures: 5,
            address_failures: 20,
            first_lockout: Duration::from_secs(5),
            max_lockout: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(60 * 60),
            max_entries: 65_536,
        }
    }
}

/// What a refused attempt was throttled by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    Address,
}

/// An attempt refused: try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    pub scope: Scope,
    pub retry_after: Duration,
}

/// Usernames are at most 63 characters; longer ones share one key, which
/// bounds the memory a key can take.
const MAX_USER_KEY: usize = 64;

/// One username's or address's recent failures.
#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    /// Attempts admitted and still being checked.
    in_flight: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

impl Record {
    fn new(now: Instant) -> Self {
        Record {
            failures: 0,
            in_flight: 0,
            last_failure: now,
            locked_until: None,
        }
    }

    /// Why an attempt must wait, if it must. Past the free failures only one
    /// attempt is checked at a time, so a burst of concurrent guesses cannot
    /// slip through before the first of them is counted.
    fn refusal(&self, free: u32, now: Instant) -> Option<Duration> {
        if let Some(until) = self.locked_until.filter(|until| *until > now) {
            return Some(until - now);
        }
        let over_budget = self.failures + self.in_flight >= free;
        (over_budget && self.in_flight > 0).then_some(Duration::from_secs(1))
    }
}

struct Table<K> {
    records: LruCache<K, Record>,
    free: u32,
}

impl<K: std::hash::Hash + Eq + Clone> Table<K> {
    /// The key's record, started afresh if it has been quiet long enough.
    fn record(&mut self, key: &K, now: Instant, limits: &ThrottleLimits) -> &mut Record {
        let stale = self.records.get(key).is_some_and(|r| {
            r.in_flight == 0 && now.duration_since(r.last_failure) >= limits.forget_after
        });
        if stale || !self.records.contains_key(key) {
            self.records.insert(key.clone(), Record::new(now));
        }
        // Inserted just above when missing.
        self.records
            .get_mut(key)
            .expect("the record was just inserted")
    }

    fn fail(&mut self, key: &K, now: Instant, limits: &ThrottleLimits) {
        let free = self.free;
        let record = self.record(key, now, limits);
        record.in_flight = record.in_flight.saturating_sub(1);
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        if record.failures > free {
            let doublings = (record.failures - free - 1).min(31);
            let lockout = limits
                .first_lockout
                .saturating_mul(1 << doublings)
                .min(limits.max_lockout);
            record.locked_until = Some(now + lockout);
        }
    }

    fn release(&mut self, key: &K) {
        if let Some(record) = self.records.peek_mut(key) {
            record.in_flight = record.in_flight.saturating_sub(1);
        }
    }

    fn locked(&self, now: Instant) -> usize {
        self.records
            .iter()
            .filter(|(_, r)| r.locked_until.is_some_and(|until| until > now))
            .count()
    }
}

struct Tables {
    users: Table<String>,
    addresses: Table<IpAddr>,
}

/// Failed-login bookkeeping for the whole server.
pub struct LoginThrottle {
    limits: ThrottleLimits,
    tables: Mutex<Tables>,
}

impl LoginThrottle {
    pub fn new(limits: ThrottleLimits) -> Self {
        let tables = Tables {
            users: Table {
                records: LruCache::new(limits.max_entries.max(1)),
                free: limits.user_failures,
            },
            addresses: Table {
                records: LruCache::new(limits.max_entries.max(1)),
                free: limits.address_failures,
            },
        };
        Self {
            limits,
            tables: Mutex::new(tables),
        }
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // Every update leaves the tables consistent, even if one panicked.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits one attempt to log in as `username` from `address`, or says
    /// how long to wait. The ticket must be told how the attempt ended;
    /// dropped untold (an error, a busy server) it counts as nothing.
    pub fn admit(
        self: &Arc<Self>,
        username: &str,
        address: Option<IpAddr>,
    ) -> Result<Ticket, Lockout> {
        let now = Instant::now();
        let user = user_key(username);
        let address = address.map(address_key);
        let mut tables = self.tables();
        let by_user = tables
            .users
            .record(&user, now, &self.limits)
            .refusal(self.limits.user_failures, now)
            .map(|wait| (Scope::User, wait));
        let by_address = address.and_then(|a| {
            tables
                .addresses
                .record(&a, now, &self.limits)
                .refusal(self.limits.address_failures, now)
                .map(|wait| (Scope::Address, wait))
        });
        if let Some((scope, retry_after)) =
            by_user.into_iter().chain(by_address).max_by_key(|r| r.1)
        {
            return Err(Lockout { scope, retry_after });
        }
        tables.users.record(&user, now, &self.limits).in_flight += 1;
        if let Some(a) = &address {
            tables.addresses.record(a, now, &self.limits).in_flight += 1;
        }
        Ok(Ticket {
            throttle: Arc::clone(self),
            user,
            address,
            settled: false,
        })
    }

    /// Usernames and addresses locked out right now (for metrics).
    pub fn locked(&self) -> (usize, usize) {
        let now = Instant::now();
        let tables = self.tables();
        (tables.users.locked(now), tables.addresses.locked(now))
    }
}

/// One admitted login attempt.
pub struct Ticket {
    throttle: Arc<LoginThrottle>,
    user: String,
    address: Option<IpAddr>,
    settled: bool,
}

impl Ticket {
    /// The password was wrong (or the user unknown): count it.
    pub fn failed(mut self) {
        self.settled = true;
        let now = Instant::now();
        let limits = &self.throttle.limits;
        let mut tables = self.throttle.tables();
        tables.users.fail(&self.user, now, limits);
        if let Some(address) = &self.address {
            tables.addresses.fail(address, now, limits);
        }
    }

    /// The password was right: the username starts afresh. The address
    /// keeps its count, or one valid account would let its owner reset the
    /// count between guesses at others.
    pub fn succeeded(mut self) {
        self.settled = true;
        let mut tables = self.throttle.tables();
        tables.users.records.remove(&self.user);
        if let Some(address) = &self.address {
            tables.addresses.release(address);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut tables = self.throttle.tables();
        tables.users.release(&self.user);
        if let Some(address) = &self.address {
            tables.addresses.release(address);
        }
    }
}

fn user_key(username: &str) -> String {
    let mut end = username.len().min(MAX_USER_KEY);
    while !username.is_char_boundary(end) {
        end -= 1;
    }
    username[..end].to_owned()
}

/// IPv4 addresses count one by one; IPv6 by /64, the block one subscriber
/// usually holds, so rotating through it does not escape the count.
fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ThrottleLimits {
        ThrottleLimits {
            user_failures: 2,
            address_failures: 3,
            first_lockout: Duration::from_secs(10),
            max_lockout: Duration::from_secs(40),
            forget_after: Duration::from_secs(3600),
            max_entries: 4,
        }
    }

    fn fail(throttle: &Arc<LoginThrottle>, user: &str, address: Option<IpAddr>) {
        throttle.admit(user, address).expect("admitted").failed();
    }

    #[test]
    fn lockouts_start_after_the_free_failures_and_double() {
        let throttle = Arc::new(LoginThrottle::new(limits()));
        fail(&throttle, "alice", None);
        fail(&throttle, "alice", None);
        assert!(throttle.admit("alice", None).is_ok());
        fail(&throttle, "alice", None);
        let lockout = throttle.admit("alice", None).err().expect("locked");
        assert_eq!(lockout.scope, Scope::User);
        assert!(lockout.retry_after > Duration::from_secs(9), "{lockout:?}");
        assert!(throttle.admit("bob", None).is_ok(), "others are not locked");
        // Each later failure doubles the lockout, up to the cap.
        let mut tables = throttle.tables();
        let now = Instant::now();
        for expected in [20, 40, 40] {
            tables
                .users
                .fail(&"alice".to_owned(), now, &throttle.limits);
            let until = tables
                .users
                .records
                .peek("alice")
                .and_then(|r| r.locked_until);
            assert_eq!(until, Some(now + Duration::from_secs(expected)));
        }
    }

    #[test]
    fn success_resets_the_user_but_not_the_address() {
        let throttle = Arc::new(LoginThrottle::new(limits()));
        let here = Some("192.0.2.1".parse().expect("address"));
        fail(&throttle, "alice", here);
        fail(&throttle, "alice", here);
        throttle.admit("alice", here).expect("admitted").succeeded();
        fail(&throttle, "alice", here);
        fail(&throttle, "alice", here);
        assert!(
            throttle.admit("alice", None).is_ok(),
            "the user starts afresh"
        );
        // Four failures from this address: over its three free ones.
        let lockout = throttle.admit("carol", here).err().expect("locked");
        assert_eq!(lockout.scope, Scope::Address);
    }

    #[test]
    fn concurrent_attempts_past_the_budget_wait_their_turn() {
        let throttle = Arc::new(LoginThrottle::new(limits()));
        let first = throttle.admit("alice", None).expect("free");
        let second = throttle.admit("alice", None).expect("free");
        let third = throttle.admit("alice", None);
        assert_eq!(
            third.err().map(|l| l.retry_after),
            Some(Duration::from_secs(1)),
            "two in flight use the budget"
        );
        drop(first); // an error, not a failure: nothing counted
        second.failed();
        assert!(throttle.admit("alice", None).is_ok());
    }

    #[test]
    fn keys_are_forgotten_after_quiet_and_tables_stay_bounded() {
        let limits = ThrottleLimits {
            forget_after: Duration::ZERO,
            ..limits()
        };
        let throttle = Arc::new(LoginThrottle::new(limits));
        for _ in 0..5 {
            fail(&throttle, "alice", None);
        }
        assert!(throttle.admit("alice", None).is_ok(), "forgotten at once");

        let throttle = Arc::new(LoginThrottle::new(super::tests::limits()));
        for n in 0..1000 {
            fail(
                &throttle,
                &format!("user-{n}"),
                Some(IpAddr::from([10, 0, 0, n as u8])),
            );
        }
        let tables = throttle.tables();
        assert_eq!(tables.users.records.len(), 4);
        assert_eq!(tables.addresses.records.len(), 4);
    }

    #[test]
    fn keys_are_bounded_and_ipv6_counts_by_slash_64() {
        assert_eq!(user_key(&"é".repeat(100)).len(), 64);
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("v6");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("v6");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("mapped v4");
        assert_eq!(address_key(mapped), IpAddr::from([192, 0, 2, 7]));
    }
}
