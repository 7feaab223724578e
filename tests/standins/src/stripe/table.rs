//! A kind of object as the stand-in keeps it: in creation order, found by id
//! in O(1), and paged newest first with `created` filters in O(log n + limit)
//! — so a list over a million objects (the reconciliation benchmark) costs
//! what a list over ten does.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use serde_json::Value;

/// What a stored object must tell the table.
pub(crate) trait Keyed {
    fn id(&self) -> &str;
    fn created(&self) -> i64;
}

pub(crate) struct Table<T> {
    items: Vec<T>,
    by_id: HashMap<String, usize>,
    /// (created, insertion index): ascending is oldest first, and among
    /// objects of one second, the earlier inserted first.
    by_time: BTreeSet<(i64, usize)>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self { items: Vec::new(), by_id: HashMap::new(), by_time: BTreeSet::new() }
    }
}

/// `created` bounds from `created[gte|gt|lte|lt]=` (or `created=` exact).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Created {
    /// Inclusive lower bound.
    pub(crate) from: Option<i64>,
    /// Exclusive upper bound.
    pub(crate) until: Option<i64>,
}

impl Created {
    /// Reads the filter from a query; `Err(param)` names a bad one.
    pub(crate) fn parse(query: &[(String, String)]) -> Result<Self, String> {
        let mut c = Self::default();
        for (k, v) in query {
            let op = match k.as_str() {
                "created" => "eq",
                "created[gte]" => "gte",
                "created[gt]" => "gt",
                "created[lte]" => "lte",
                "created[lt]" => "lt",
                _ => continue,
            };
            let n: i64 = v.parse().map_err(|_| k.clone())?;
            let (from, until) = match op {
                "eq" => (Some(n), Some(n.saturating_add(1))),
                "gte" => (Some(n), None),
                "gt" => (Some(n.saturating_add(1)), None),
                "lte" => (None, Some(n.saturating_add(1))),
                _ => (None, Some(n)),
            };
            if let Some(f) = from {
                c.from = Some(c.from.map_or(f, |old| old.max(f)));
            }
            if let Some(u) = until {
                c.until = Some(c.until.map_or(u, |old| old.min(u)));
            }
        }
        Ok(c)
    }

    pub(crate) fn contains(&self, created: i64) -> bool {
        self.from.is_none_or(|f| created >= f) && self.until.is_none_or(|u| created < u)
    }
}

/// A page: the objects, newest first, and whether more follow.
pub(crate) enum Cursor<'a> {
    None,
    StartingAfter(&'a str),
    EndingBefore(&'a str),
}

impl<T: Keyed> Table<T> {
    pub(crate) fn push(&mut self, item: T) {
        let at = self.items.len();
        self.by_id.insert(item.id().to_owned(), at);
        self.by_time.insert((item.created(), at));
        self.items.push(item);
    }

    pub(crate) fn get(&self, id: &str) -> Option<&T> {
        self.by_id.get(id).map(|&i| &self.items[i])
    }

    /// Changes an object in place (its id must stay; its `created` may move).
    pub(crate) fn update<R>(&mut self, id: &str, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let &at = self.by_id.get(id)?;
        let before = self.items[at].created();
        let r = f(&mut self.items[at]);
        let after = self.items[at].created();
        if before != after {
            self.by_time.remove(&(before, at));
            self.by_time.insert((after, at));
        }
        Some(r)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Up to `limit` objects within `created`, newest first, from the
    /// cursor; `Err(id)` when the cursor names no object.
    pub(crate) fn page(&self, created: Created, cursor: Cursor<'_>, limit: usize) -> Result<(Vec<&T>, bool), String> {
        let key = |id: &str| self.by_id.get(id).map(|&i| (self.items[i].created(), i)).ok_or_else(|| id.to_owned());
        let lo = Bound::Included((created.from.unwrap_or(i64::MIN), 0));
        let hi = created.until.map_or(Bound::Unbounded, |u| Bound::Excluded((u, 0)));
        let (keys, has_more): (Vec<(i64, usize)>, bool) = match cursor {
            Cursor::None => {
                if !nonempty(lo, hi) {
                    return Ok((Vec::new(), false));
                }
                let mut it = self.by_time.range((lo, hi)).rev().copied();
                let keys: Vec<_> = it.by_ref().take(limit).collect();
                (keys, it.next().is_some())
            }
            Cursor::StartingAfter(id) => {
                let k = key(id)?;
                let upper = match hi {
                    Bound::Excluded(h) if h < k => Bound::Excluded(h),
                    _ => Bound::Excluded(k),
                };
                if !nonempty(lo, upper) {
                    return Ok((Vec::new(), false));
                }
                let mut it = self.by_time.range((lo, upper)).rev().copied();
                let keys: Vec<_> = it.by_ref().take(limit).collect();
                (keys, it.next().is_some())
            }
            Cursor::EndingBefore(id) => {
                let k = key(id)?;
                let lower = match lo {
                    Bound::Included(l) if l > k => Bound::Included(l),
                    _ => Bound::Excluded(k),
                };
                if !nonempty(lower, hi) {
                    return Ok((Vec::new(), false));
                }
                let mut it = self.by_time.range((lower, hi)).copied();
                let mut keys: Vec<_> = it.by_ref().take(limit).collect();
                let more = it.next().is_some();
                keys.reverse();
                (keys, more)
            }
        };
        Ok((keys.into_iter().map(|(_, i)| &self.items[i]).collect(), has_more))
    }
}

/// Whether `(lo, hi)` is a range `BTreeSet::range` accepts and that may hold keys.
fn nonempty(lo: Bound<(i64, usize)>, hi: Bound<(i64, usize)>) -> bool {
    match (lo, hi) {
        (Bound::Included(l), Bound::Excluded(h)) | (Bound::Excluded(l), Bound::Excluded(h)) => l < h,
        (Bound::Included(l), Bound::Included(h)) => l <= h,
        (Bound::Excluded(l), Bound::Included(h)) => l < h,
        _ => true,
    }
}

/// A list page's body, as Stripe shapes it.
pub(crate) fn list_body(data: Vec<Value>, has_more: bool, url: &str) -> Value {
    serde_json::json!({ "object": "list", "data": data, "has_more": has_more, "url": url })
}
