use std::collections::BTreeMap;
use std::fmt;

/// The reserved label holding a series' metric name.
pub const METRIC_NAME: &str = "__name__";

#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Label {
    pub name: String,
    pub value: String,
}

/// A set of labels kept sorted by name, so equal sets compare and hash equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Builds from pairs in any order; a later duplicate name replaces an earlier one.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut l = Labels::new();
        for (k, v) in pairs {
            l.set(k, v);
        }
        l
    }

    /// Takes labels that may be unsorted; returns the first duplicated name as an error.
    pub fn from_vec(mut v: Vec<Label>) -> Result<Self, String> {
        v.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        for w in v.windows(2) {
            if w[0].name == w[1].name {
                return Err(w[0].name.clone());
            }
        }
        Ok(Self(v))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        // Series carry a handful of labels: an equality scan (lengths first) is cheaper than
        // the ordered comparisons of a binary search, which matters on the ingest path where
        // every series is asked for its name and host.
        if self.0.len() <= 16 {
            return self
                .0
                .iter()
                .find(|l| l.name == name)
                .map(|l| l.value.as_str());
        }
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.0.binary_search_by(|l| l.name.cmp(&name)) {
            Ok(i) => self.0[i].value = value,
            Err(i) => self.0.insert(i, Label { name, value }),
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        match self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) => Some(self.0.remove(i).value),
            Err(_) => None,
        }
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// A copy without the metric name: the identity two series share in a binary expression.
    pub fn without_name(&self) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| l.name != METRIC_NAME)
                .cloned()
                .collect(),
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// A stable 64-bit hash (xxh3) of the label set, identical across runs and machines.
    pub fn fingerprint(&self) -> u64 {
        // The hash of the compact key. Typical sets fit a stack buffer and take xxh3's one-shot
        // path, cheaper than its streaming state; the value is the same either way.
        let mut buf = [0u8; 256];
        let mut n = 0;
        for l in &self.0 {
            for part in [l.name.as_bytes(), l.value.as_bytes()] {
                let Some(dst) = buf.get_mut(n..n + part.len() + 1) else {
                    return xxhash_rust::xxh3::xxh3_64(&self.key());
                };
                dst[..part.len()].copy_from_slice(part);
                dst[part.len()] = 0xff;
                n += part.len() + 1;
            }
        }
        xxhash_rust::xxh3::xxh3_64(&buf[..n])
    }

    /// The label set as one byte string (each name and value followed by 0xff, a byte UTF-8
    /// never holds): a compact form to keep many label sets in memory, one allocation each.
    pub fn key(&self) -> Box<[u8]> {
        let len = self
            .0
            .iter()
            .map(|l| l.name.len() + l.value.len() + 2)
            .sum();
        let mut k = Vec::with_capacity(len);
        for l in &self.0 {
            k.extend_from_slice(l.name.as_bytes());
            k.push(0xff);
            k.extend_from_slice(l.value.as_bytes());
            k.push(0xff);
        }
        k.into_boxed_slice()
    }

    /// Whether `key` (from [`Labels::key`]) is this label set.
    pub fn matches_key(&self, mut key: &[u8]) -> bool {
        for l in &self.0 {
            for part in [l.name.as_bytes(), l.value.as_bytes()] {
                let n = part.len();
                if key.len() <= n || key[n] != 0xff || &key[..n] != part {
                    return false;
                }
                key = &key[n + 1..];
            }
        }
        key.is_empty()
    }

    /// The label set a [`Labels::key`] was made from.
    pub fn from_key(key: &[u8]) -> Labels {
        let mut parts = key
            .split(|&b| b == 0xff)
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let mut v = Vec::with_capacity(key.iter().filter(|&&b| b == 0xff).count() / 2);
        while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
            v.push(Label { name, value });
        }
        Labels(v)
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect()
    }
}

impl serde::Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for l in &self.0 {
            m.serialize_entry(&l.name, &l.value)?;
        }
        m.end()
    }
}

impl<'de> serde::Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = BTreeMap::<String, String>::deserialize(d)?;
        Ok(Labels(
            m.into_iter()
                .map(|(name, value)| Label { name, value })
                .collect(),
        ))
    }
}

/// Prometheus text form: `name{a="x", b="y"}`.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.metric_name() {
            f.write_str(n)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, as Prometheus requires.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, as Prometheus requires.
pub fn is_valid_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// Whether a series name is one the collector derives itself and no sender may write:
/// `tocsin_*` (host liveness, service levels and burn conditions, change markers, its own
/// metrics — what rules page on and dashboards show), except the agent's own telemetry,
/// `tocsin_agent_*` and `tocsin_log_*`.
pub fn is_reserved_metric_name(s: &str) -> bool {
    s.starts_with("tocsin_") && !s.starts_with("tocsin_agent_") && !s.starts_with("tocsin_log_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_stable() {
        let a = Labels::from_pairs([("b", "2"), ("a", "1"), (METRIC_NAME, "m")]);
        let b = Labels::from_pairs([(METRIC_NAME, "m"), ("a", "1"), ("b", "2")]);
        assert_eq!(a, b);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.to_string(), r#"m{a="1", b="2"}"#);
        assert_eq!(a.without_name().get(METRIC_NAME), None);
        // Name/value boundaries matter: {a="bc"} differs from {ab="c"}.
        assert_ne!(
            Labels::from_pairs([("a", "bc")]).fingerprint(),
            Labels::from_pairs([("ab", "c")]).fingerprint()
        );
    }

    #[test]
    fn fingerprint_is_the_streamed_hash_of_the_labels() {
        // Fingerprints are stored (baselines, alert states): they must never change.
        let streamed = |l: &Labels| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for l in l.iter() {
                h.update(l.name.as_bytes());
                h.update(&[0xff]);
                h.update(l.value.as_bytes());
                h.update(&[0xff]);
            }
            h.digest()
        };
        for len in [0, 1, 100, 240, 250, 251, 252, 300, 5000] {
            let l = Labels::from_pairs([(METRIC_NAME, "m".to_string()), ("v", "x".repeat(len))]);
            assert_eq!(l.fingerprint(), streamed(&l), "value of {len} bytes");
        }
        assert_eq!(Labels::new().fingerprint(), streamed(&Labels::new()));
        // And a pinned value.
        assert_eq!(
            Labels::from_pairs([(METRIC_NAME, "up"), ("host", "a")]).fingerprint(),
            11_383_713_020_417_542_371
        );
    }

    #[test]
    fn compact_key_round_trip() {
        let a = Labels::from_pairs([(METRIC_NAME, "m"), ("a", "bc"), ("é", "")]);
        let k = a.key();
        assert_eq!(Labels::from_key(&k), a);
        assert!(a.matches_key(&k));
        // Boundaries matter, and so do missing and extra labels.
        assert!(!Labels::from_pairs([(METRIC_NAME, "m"), ("ab", "c"), ("é", "")]).matches_key(&k));
        assert!(!Labels::from_pairs([(METRIC_NAME, "m"), ("a", "bc")]).matches_key(&k));
        assert!(!a.matches_key(&Labels::from_pairs([(METRIC_NAME, "m")]).key()));
        assert!(Labels::new().matches_key(&Labels::new().key()));
        assert_eq!(Labels::from_key(&Labels::new().key()), Labels::new());
    }

    #[test]
    fn duplicates_rejected() {
        let v = vec![
            Label {
                name: "x".into(),
                value: "1".into(),
            },
            Label {
                name: "x".into(),
                value: "2".into(),
            },
        ];
        assert_eq!(Labels::from_vec(v).unwrap_err(), "x");
    }

    #[test]
    fn names() {
        assert!(is_valid_label_name("host_1"));
        assert!(!is_valid_label_name("1host"));
        assert!(!is_valid_label_name("a:b"));
        assert!(is_valid_metric_name("job:rate5m"));
        assert!(!is_valid_metric_name(""));
    }

    #[test]
    fn serde_as_map() {
        let a = Labels::from_pairs([("b", "2"), ("a", "1")]);
        let j = serde_json::to_string(&a).unwrap();
        assert_eq!(j, r#"{"a":"1","b":"2"}"#);
        assert_eq!(serde_json::from_str::<Labels>(&j).unwrap(), a);
    }
}
