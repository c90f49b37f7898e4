//! Verified tokens, so that a request with a token seen before pays a hash lookup,
//! not a signature check (or a call to the identity provider). An entry lasts
//! until its token expires, and at most `max_age`; the cache is emptied when the
//! signing keys change, and bounded in size.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::User;

/// Most tokens held; past it, expired entries go, then everything.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
struct Entry {
    user: Arc<User>,
    /// Unix seconds after which the entry is not used.
    until: i64,
}

/// Tokens already verified, with the user each stands for.
#[derive(Debug)]
pub(crate) struct TokenCache {
    entries: RwLock<HashMap<Box<str>, Entry, foldhash::fast::RandomState>>,
    max_age: i64,
}

impl TokenCache {
    /// A cache whose entries last at most `max_age`.
    pub(crate) fn new(max_age: Duration) -> Self {
        TokenCache {
            entries: RwLock::new(HashMap::default()),
            max_age: i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// The user of a token verified before, while its entry lasts at `now`.
    pub(crate) fn get(&self, token: &str, now: i64) -> Option<Arc<User>> {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(token)?;
        (now < entry.until).then(|| entry.user.clone())
    }

    /// Remembers a verified token, until `expires` (its `exp` plus leeway) and at
    /// most `max_age` from `now`.
    pub(crate) fn insert(&self, token: &str, user: Arc<User>, now: i64, expires: Option<i64>) {
        let until = expires.map_or(now.saturating_add(self.max_age), |e| {
            e.min(now.saturating_add(self.max_age))
        });
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| now < e.until);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(token.into(), Entry { user, until });
    }

    /// Forgets every token (the keys they were verified with changed).
    pub(crate) fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_last_until_expiry_and_at_most_max_age() {
        let cache = TokenCache::new(Duration::from_secs(300));
        let alice = Arc::new(User {
            username: "alice".into(),
            ..User::default()
        });
        cache.insert("t1", alice.clone(), 1000, Some(1100));
        cache.insert("t2", alice.clone(), 1000, None);
        assert!(cache.get("t1", 1099).is_some());
        assert!(cache.get("t1", 1100).is_none());
        assert!(cache.get("t2", 1299).is_some());
        assert!(cache.get("t2", 1300).is_none());
        assert!(cache.get("t3", 1000).is_none());
        cache.clear();
        assert!(cache.get("t2", 1001).is_none());
    }
}
