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
//! Both tables are bounded, so memory stays constant under a flood; what
//! they must never do is forget a lockout because a flood made room. So a
//! refused attempt records nothing (only an attempt admitted to have its
//! password checked, which costs the attacker an argon2 check, adds a
//! key), and a full table first forgets the least recently used key still
//! within its free failures. Keys past them (locked, or locking at their
//! next failure) go only when no other is left, the least recently used
//! first: pushing one out means filling the whole table with keys that
//! each failed a checked password that many times.

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
    /// Keys remembered per table (usernames, addresses); see the module
    /// comment for which are forgotten first.
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

    /// Quiet for long enough to start afresh.
    fn forgotten(&self, now: Instant, forget_after: Duration) -> bool {
        self.in_flight == 0 && now.duration_since(self.last_failure) >= forget_after
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

/// One table of keys (usernames or addresses), in two LRU lists so that
/// making room is O(1) and never costs a lockout while other keys remain.
struct Table<K> {
    /// Keys still within their free failures: forgotten first.
    fresh: LruCache<K, Record>,
    /// Keys past their free failures.
    penalized: LruCache<K, Record>,
    free: u32,
    capacity: usize,
}

impl<K: std::hash::Hash + Eq + Clone> Table<K> {
    fn new(free: u32, capacity: usize) -> Self {
        Self {
            fresh: LruCache::new_unbounded(),
            penalized: LruCache::new_unbounded(),
            free,
            capacity: capacity.max(1),
        }
    }

    fn len(&self) -> usize {
        self.fresh.len() + self.penalized.len()
    }

    /// The key's record as it stands, without counting as a use.
    fn peek(&self, key: &K, now: Instant, limits: &ThrottleLimits) -> Option<&Record> {
        let record = self.penalized.peek(key).or_else(|| self.fresh.peek(key));
        record.filter(|r| !r.forgotten(now, limits.forget_after))
    }

    fn refusal(&self, key: &K, now: Instant, limits: &ThrottleLimits) -> Option<Duration> {
        self.peek(key, now, limits)
            .and_then(|r| r.refusal(self.free, now))
    }

    /// Takes the key's record out (a new one if it had none or it was
    /// forgotten), to be changed and put back.
    fn take(&mut self, key: &K, now: Instant, limits: &ThrottleLimits) -> Record {
        let record = self
            .penalized
            .remove(key)
            .or_else(|| self.fresh.remove(key));
        record
            .filter(|r| !r.forgotten(now, limits.forget_after))
            .unwrap_or_else(|| Record::new(now))
    }

    /// Puts a record back as the most recently used, in the list its
    /// failures place it in, making room first if the table is full.
    fn put(&mut self, key: K, record: Record) {
        if self.len() >= self.capacity {
            // Only when no key within its free failures is left does a
            // penalized one go; see the module comment.
            if self.fresh.remove_lru().is_none() {
                self.penalized.remove_lru();
            }
        }
        if record.failures >= self.free {
            self.penalized.insert(key, record);
        } else {
            self.fresh.insert(key, record);
        }
    }

    /// An attempt for this key was admitted and is being checked.
    fn begin(&mut self, key: &K, now: Instant, limits: &ThrottleLimits) {
        let mut record = self.take(key, now, limits);
        record.in_flight = record.in_flight.saturating_add(1);
        self.put(key.clone(), record);
    }

    fn fail(&mut self, key: &K, now: Instant, limits: &ThrottleLimits) {
        let mut record = self.take(key, now, limits);
        record.in_flight = record.in_flight.saturating_sub(1);
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        if record.failures > self.free {
            let doublings = (record.failures - self.free - 1).min(31);
            let lockout = limits
                .first_lockout
                .saturating_mul(1 << doublings)
                .min(limits.max_lockout);
            record.locked_until = Some(now + lockout);
        }
        self.put(key.clone(), record);
    }

    /// An admitted attempt ended without counting (an error, a busy server).
    fn release(&mut self, key: &K) {
        let record = match self.penalized.peek_mut(key) {
            Some(record) => Some(record),
            None => self.fresh.peek_mut(key),
        };
        if let Some(record) = record {
            record.in_flight = record.in_flight.saturating_sub(1);
        }
    }

    fn remove(&mut self, key: &K) {
        self.penalized.remove(key);
        self.fresh.remove(key);
    }

    /// Keys locked out now: only penalized keys can be.
    fn locked(&self, now: Instant) -> usize {
        self.penalized
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
            users: Table::new(limits.user_failures, limits.max_entries),
            addresses: Table::new(limits.address_failures, limits.max_entries),
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
        // Looked at, not touched: a refused attempt leaves no trace.
        let by_user = tables
            .users
            .refusal(&user, now, &self.limits)
            .map(|wait| (Scope::User, wait));
        let by_address = address.and_then(|a| {
            tables
                .addresses
                .refusal(&a, now, &self.limits)
                .map(|wait| (Scope::Address, wait))
        });
        if let Some((scope, retry_after)) =
            by_user.into_iter().chain(by_address).max_by_key(|r| r.1)
        {
            return Err(Lockout { scope, retry_after });
        }
        tables.users.begin(&user, now, &self.limits);
        if let Some(a) = &address {
            tables.addresses.begin(a, now, &self.limits);
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
        tables.users.remove(&self.user);
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
                .peek(&"alice".to_owned(), now, &throttle.limits)
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
        assert_eq!(tables.users.len(), 4);
        assert_eq!(tables.addresses.len(), 4);
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("an address"))
    }

    /// An address already locked out sends logins for ever new usernames:
    /// each is refused at no cost, and none may push alice's lockout out.
    #[test]
    fn refused_attempts_remember_nothing() {
        let limits = ThrottleLimits {
            address_failures: 1,
            ..limits()
        };
        let throttle = Arc::new(LoginThrottle::new(limits));
        for _ in 0..3 {
            fail(&throttle, "alice", None);
        }
        let attacker = ip("192.0.2.66");
        fail(&throttle, "bob", attacker);
        fail(&throttle, "bob", attacker);
        for n in 0..1000 {
            let refused = throttle.admit(&format!("new-{n}"), attacker).err();
            assert_eq!(refused.map(|l| l.scope), Some(Scope::Address));
        }
        let alice = throttle.admit("alice", None).err().map(|l| l.scope);
        assert_eq!(alice, Some(Scope::User), "alice is still locked out");
        assert_eq!(throttle.tables().users.len(), 2, "alice and bob only");
    }

    /// Checked failures for new usernames from new addresses fill the
    /// tables, but push out keys still within their free failures first.
    #[test]
    fn a_flood_of_new_keys_keeps_the_lockouts() {
        let throttle = Arc::new(LoginThrottle::new(limits()));
        for _ in 0..3 {
            fail(&throttle, "alice", None);
        }
        let attacker = ip("192.0.2.66");
        for n in 0..4 {
            fail(&throttle, &format!("spray-{n}"), attacker);
        }
        for n in 0..1000u32 {
            let [_, _, high, low] = n.to_be_bytes();
            fail(
                &throttle,
                &format!("new-{n}"),
                Some(IpAddr::from([10, 0, high, low])),
            );
        }
        let alice = throttle.admit("alice", None).err().map(|l| l.scope);
        assert_eq!(alice, Some(Scope::User), "alice is still locked out");
        let sprayer = throttle.admit("someone", attacker).err().map(|l| l.scope);
        assert_eq!(
            sprayer,
            Some(Scope::Address),
            "the address is still locked out"
        );
    }

    /// With every key past its free failures, a new one pushes out the one
    /// used longest ago: the table stays bounded whatever fills it.
    #[test]
    fn a_table_full_of_penalized_keys_forgets_the_oldest() {
        let throttle = Arc::new(LoginThrottle::new(limits()));
        for n in 0..5 {
            fail(&throttle, &format!("u{n}"), None);
            fail(&throttle, &format!("u{n}"), None);
        }
        let tables = throttle.tables();
        let now = Instant::now();
        let known = |user: &str| {
            tables
                .users
                .peek(&user.to_owned(), now, &throttle.limits)
                .is_some()
        };
        assert_eq!(tables.users.len(), 4);
        assert!(!known("u0") && known("u1") && known("u4"));
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
