//! A head's field lines in arrival order, stored flat: every name in one
//! `String`, every value in one `Vec<u8>`, and the end of each.
//!
//! Owns: field storage and lookup (ASCII case-insensitive names).
//! Must not: judge fields (the parsers did) or encode them (`h1::encode`,
//! `h2::hpack`).
//!
//! Why not `Vec<(String, Vec<u8>)>`: that is two allocations per field, and
//! a proxied request carries two heads of ~10 fields each. They were the
//! largest share of the allocations per request (counted with uprobes on
//! malloc: ~18 of 42 per HTTP/1.1 request). Here a head costs three,
//! whatever its size.

use std::fmt;

/// Field lines: names as received (or as decoded), values as received with
/// OWS trimmed, in order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Fields {
    names: String,
    values: Vec<u8>,
    /// Per field: where its name and its value end in the buffers (each
    /// starts where the previous one ended).
    ends: Vec<(usize, usize)>,
}

impl Fields {
    pub fn new() -> Fields {
        Fields::default()
    }

    /// Room for `fields` fields whose names and values take `names` and
    /// `values` bytes.
    pub fn with_capacity(fields: usize, names: usize, values: usize) -> Fields {
        Fields {
            names: String::with_capacity(names),
            values: Vec::with_capacity(values),
            ends: Vec::with_capacity(fields),
        }
    }

    pub fn push(&mut self, name: &str, value: &[u8]) {
        self.names.push_str(name);
        self.values.extend_from_slice(value);
        self.ends.push((self.names.len(), self.values.len()));
    }

    /// Put a field at position `i` (at the end if `i` is past it).
    pub fn insert(&mut self, i: usize, name: &str, value: &[u8]) {
        let i = i.min(self.len());
        let (name_at, value_at) = self.start_of(i);
        self.names.insert_str(name_at, name);
        self.values
            .splice(value_at..value_at, value.iter().copied());
        for end in self.ends.iter_mut().skip(i) {
            end.0 += name.len();
            end.1 += value.len();
        }
        self.ends
            .insert(i, (name_at + name.len(), value_at + value.len()));
    }

    /// Room for `fields` more fields of `names` and `values` more bytes.
    pub fn reserve(&mut self, fields: usize, names: usize, values: usize) {
        self.names.reserve(names);
        self.values.reserve(values);
        self.ends.reserve(fields);
    }

    /// No fields, capacity kept.
    pub fn clear(&mut self) {
        self.names.clear();
        self.values.clear();
        self.ends.clear();
    }

    /// Bytes held by the buffers (for keep-or-drop decisions).
    pub fn capacity_bytes(&self) -> usize {
        self.names.capacity()
            + self.values.capacity()
            + self.ends.capacity() * std::mem::size_of::<(usize, usize)>()
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of names and values together.
    pub fn byte_len(&self) -> usize {
        self.names.len() + self.values.len()
    }

    /// Field `i` as (name, value).
    pub fn get(&self, i: usize) -> Option<(&str, &[u8])> {
        Some(self.slices(self.start_of(i), *self.ends.get(i)?))
    }

    /// Where field `i` starts in the two buffers (where `i - 1` ended).
    fn start_of(&self, i: usize) -> (usize, usize) {
        i.checked_sub(1)
            .and_then(|p| self.ends.get(p).copied())
            .unwrap_or_default()
    }

    /// The name and value between two (name, value) offsets.
    fn slices(&self, start: (usize, usize), end: (usize, usize)) -> (&str, &[u8]) {
        (
            self.names.get(start.0..end.0).unwrap_or_default(),
            self.values.get(start.1..end.1).unwrap_or_default(),
        )
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            fields: self,
            next: 0,
            starts: (0, 0),
        }
    }

    /// First value of `name` (ASCII case-insensitive).
    pub fn find(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every value of `name` (ASCII case-insensitive), in order.
    pub fn values_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Keep the fields `keep` says yes to, in order (`keep` is asked once
    /// per field).
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &[u8]) -> bool) {
        let Some(first_dropped) = self.iter().position(|(n, v)| !keep(n, v)) else {
            return;
        };
        let old = std::mem::take(self);
        *self = Fields::with_capacity(old.len(), old.names.len(), old.values.len());
        for (i, (n, v)) in old.iter().enumerate() {
            if i < first_dropped || (i > first_dropped && keep(n, v)) {
                self.push(n, v);
            }
        }
    }

    /// The same fields, each value replaced where `change` returns one.
    pub fn map_values(&mut self, mut change: impl FnMut(&str, &[u8]) -> Option<Vec<u8>>) {
        let old = std::mem::take(self);
        *self = Fields::with_capacity(old.len(), old.names.len(), old.values.len());
        for (n, v) in old.iter() {
            match change(n, v) {
                Some(new) => self.push(n, &new),
                None => self.push(n, v),
            }
        }
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(n, v)| (n, String::from_utf8_lossy(v))))
            .finish()
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> FromIterator<(N, V)> for Fields {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Fields {
        let mut fields = Fields::new();
        fields.extend(iter);
        fields
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> Extend<(N, V)> for Fields {
    fn extend<I: IntoIterator<Item = (N, V)>>(&mut self, iter: I) {
        for (n, v) in iter {
            self.push(n.as_ref(), v.as_ref());
        }
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a str, &'a [u8]);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Fields in order, as (name, value).
#[derive(Clone)]
pub struct Iter<'a> {
    fields: &'a Fields,
    next: usize,
    starts: (usize, usize),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let end = *self.fields.ends.get(self.next)?;
        let start = std::mem::replace(&mut self.starts, end);
        self.next += 1;
        Some(self.fields.slices(start, end))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.fields.len() - self.next.min(self.fields.len());
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_order_case_and_bytes() {
        let mut f = Fields::new();
        f.push("X-A", b"1");
        f.push("x-a", b"");
        f.push("Obs", b"caf\xe9");
        assert_eq!(f.len(), 3);
        assert_eq!(
            f.iter().collect::<Vec<_>>(),
            vec![
                ("X-A", &b"1"[..]),
                ("x-a", &b""[..]),
                ("Obs", &b"caf\xe9"[..])
            ]
        );
        assert_eq!(f.get(1), Some(("x-a", &b""[..])));
        assert_eq!(f.get(2), Some(("Obs", &b"caf\xe9"[..])));
        assert_eq!(f.get(3), None);
        assert_eq!(f.iter().len(), 3);
        assert_eq!(f.byte_len(), 3 + 3 + 3 + 1 + 4);
    }

    #[test]
    fn find_is_case_insensitive_and_first() {
        let f: Fields = [("X-A", "1"), ("x-a", "2")].into_iter().collect();
        assert_eq!(f.find("x-A"), Some(&b"1"[..]));
        assert_eq!(f.find("x-b"), None);
        assert_eq!(f.values_of("X-a").collect::<Vec<_>>(), [b"1", b"2"]);
    }

    #[test]
    fn retain_and_map_values_rebuild_in_order() {
        let mut f: Fields = [("a", "1"), ("b", "2"), ("c", "3"), ("b", "4")]
            .into_iter()
            .collect();
        f.retain(|n, _| n != "b");
        assert_eq!(f, [("a", "1"), ("c", "3")].into_iter().collect());
        f.map_values(|n, v| (n == "c").then(|| [v, b"!"].concat()));
        assert_eq!(f, [("a", "1"), ("c", "3!")].into_iter().collect());
        let before = f.clone();
        f.retain(|_, _| true);
        assert_eq!(f, before);
        f.insert(0, "host", b"x.test");
        f.insert(2, "mid", b"m");
        f.insert(9, "last", b"z");
        assert_eq!(
            f,
            [
                ("host", "x.test"),
                ("a", "1"),
                ("mid", "m"),
                ("c", "3!"),
                ("last", "z")
            ]
            .into_iter()
            .collect()
        );
    }

    /// Random pushes, inserts and retains against a `Vec` of pairs.
    #[test]
    fn behaves_like_a_vec_of_pairs() {
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for _ in 0..200 {
            let (mut f, mut model) = (Fields::new(), Vec::<(String, Vec<u8>)>::new());
            for _ in 0..next(12) {
                let name = ["a", "Bb", "ccc", "é", ""][next(5) as usize].to_string();
                let value: Vec<u8> = (0..next(4)).map(|i| (i as u8) ^ 0xa5).collect();
                match next(3) {
                    0 => {
                        f.push(&name, &value);
                        model.push((name, value));
                    }
                    1 => {
                        let at = next(model.len() as u64 + 2) as usize;
                        f.insert(at, &name, &value);
                        model.insert(at.min(model.len()), (name, value));
                    }
                    _ => {
                        let drop = ["a", "Bb", "ccc", "é", ""][next(5) as usize];
                        f.retain(|n, _| n != drop);
                        model.retain(|(n, _)| n != drop);
                    }
                }
                let pairs: Vec<(&str, &[u8])> = model
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_slice()))
                    .collect();
                assert_eq!(f.iter().collect::<Vec<_>>(), pairs);
                assert_eq!(f.len(), model.len());
                for (i, p) in pairs.iter().enumerate() {
                    assert_eq!(f.get(i), Some(*p));
                }
                let mut it = f.iter();
                let _ = it.next();
                assert_eq!(it.len(), model.len().saturating_sub(1));
            }
        }
    }

    #[test]
    fn one_allocation_per_buffer_whatever_the_field_count() {
        let mut f = Fields::with_capacity(20, 200, 400);
        let (names, values) = (f.names.capacity(), f.values.capacity());
        for i in 0..20 {
            f.push("x-field", format!("value {i}").as_bytes());
        }
        assert_eq!((f.names.capacity(), f.values.capacity()), (names, values));
        assert_eq!(f.get(19), Some(("x-field", &b"value 19"[..])));
    }
}
