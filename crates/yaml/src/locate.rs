//! Where in a YAML file a value is: the line of a path of keys and list positions, read off the
//! text (block style, flow collections kept on their line). Problems found after
//! deserialization — a checked value, a name listed twice — carry the path of what they are
//! about, and the locator turns it into `file:line`.

/// One step of a path: a mapping's key or a list's position (from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// A file's lines, to look paths up in.
pub struct Locator<'a> {
    lines: Vec<&'a str>,
}

/// A line's content after its indentation and any `- ` list markers, with the column it
/// starts at; `None` for a blank or comment line.
fn content(l: &str) -> Option<(usize, &str)> {
    let mut col = l.len() - l.trim_start().len();
    let mut t = l.trim_start();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    while let Some(rest) = t.strip_prefix("- ") {
        let r = rest.trim_start();
        col += t.len() - r.len();
        t = r;
    }
    Some((col, t))
}

/// The column of a line's first character that is not a space (a list marker counts).
fn indent(l: &str) -> Option<usize> {
    content(l).map(|_| l.len() - l.trim_start().len())
}

/// Whether `t` (a line's content) is the entry of `key` in a block mapping.
fn is_key(t: &str, key: &str) -> bool {
    [key.to_string(), format!("\"{key}\""), format!("'{key}'")]
        .iter()
        .any(|k| {
            t.strip_prefix(k.as_str())
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str) -> Self {
        Locator {
            lines: text.lines().collect(),
        }
    }

    /// The 1-based line of the deepest step of `path` found: a path that goes on where the
    /// file writes a flow collection (`{ url: x }`) or a default ends on the last line found;
    /// `None` when not even the first step is in the file.
    pub fn line(&self, path: &[Seg<'_>]) -> Option<usize> {
        // The lines [lo, hi) hold the value of the step found last.
        let (mut lo, mut hi) = (0, self.lines.len());
        let mut found = None;
        for seg in path {
            let at = match *seg {
                Seg::Key(k) => self.key_in(lo, hi, k),
                Seg::Index(i) => self.item_in(lo, hi, i),
            };
            let Some((n, end)) = at else { break };
            found = Some(n);
            // A key's value is on the lines below it (on its own line it is a flow collection
            // or a scalar); a list item's mapping starts on the item's line (`- name: x`).
            lo = match seg {
                Seg::Key(_) => n + 1,
                Seg::Index(_) => n,
            };
            hi = end;
        }
        found.map(|n| n + 1)
    }

    /// The line of `key` among the entries of the mapping in [lo, hi) and the end of its
    /// value: the mapping's entries all start at the column of its first.
    fn key_in(&self, lo: usize, hi: usize, key: &str) -> Option<(usize, usize)> {
        let (first, col) = (lo..hi).find_map(|n| {
            let (c, _) = content(self.lines[n])?;
            Some((n, c))
        })?;
        let n = (first..hi)
            .find(|&n| content(self.lines[n]).is_some_and(|(c, t)| c == col && is_key(t, key)))?;
        let end = (n + 1..hi)
            .find(|&m| content(self.lines[m]).is_some_and(|(c, _)| c <= col))
            .unwrap_or(hi);
        Some((n, end))
    }

    /// The line of item `i` of the block list in [lo, hi) and the end of the item.
    fn item_in(&self, lo: usize, hi: usize, i: usize) -> Option<(usize, usize)> {
        // The list's items start with `- ` at the least indentation of its lines.
        let start = lo;
        let col = (start..hi).filter_map(|n| indent(self.lines[n])).min()?;
        let items: Vec<usize> = (start..hi)
            .filter(|&n| {
                let l = self.lines[n];
                indent(l) == Some(col) && {
                    let t = l.trim_start();
                    t == "-" || t.starts_with("- ")
                }
            })
            .collect();
        let &n = items.get(i)?;
        let end = items.get(i + 1).copied().unwrap_or_else(|| {
            (n + 1..hi)
                .find(|&m| indent(self.lines[m]).is_some_and(|c| c < col))
                .unwrap_or(hi)
        });
        Some((n, end))
    }
}

/// The path a problem's text starts with, as configuration checks write them:
/// `receivers[0] ("hook"): webhook.url "ftp://x" must be http(s)` → `receivers`, 0, `webhook`,
/// `url`; `ingest.max_body: invalid size` → `ingest`, `max_body`. After a list item's `: `, the
/// word that follows is taken as its field (`probes[1]: interval must be …`); elsewhere only a
/// word that can only be a path (`a.b`, `key:`). If the file has no such key there, the line
/// stays where the path before it is.
pub fn problem_path(p: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    let rest = take_path(p, &mut out);
    if out.is_empty() {
        return out;
    }
    // A name given beside a list item: `receivers[0] ("hook")`.
    let rest = match rest.strip_prefix(" (\"") {
        Some(r) => r.find("\")").map_or("", |i| &r[i + 2..]),
        None => rest,
    };
    if let Some(r) = rest.strip_prefix('.') {
        take_path(r, &mut out);
    } else if let Some(r) = rest.strip_prefix(": ") {
        // A field of a list item (`probes[1]: interval must …`), or a word that can only be a
        // path (`webhook.url "…"`, `tls: …`); not a message's first word after a field.
        let mut sub = Vec::new();
        let after = take_path(r, &mut sub);
        let path_like = sub.len() > 1 || after.starts_with(':');
        if matches!(out.last(), Some(Seg::Index(_))) || path_like {
            out.extend(sub);
        }
    }
    out
}

/// Reads `a.b[2].c` off the front of `s` into `out`; the rest of `s`.
fn take_path<'a>(s: &'a str, out: &mut Vec<Seg<'a>>) -> &'a str {
    let mut rest = s;
    loop {
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 || rest.as_bytes()[0].is_ascii_digit() {
            return rest;
        }
        out.push(Seg::Key(&rest[..len]));
        rest = &rest[len..];
        while let Some(r) = rest.strip_prefix('[') {
            let Some(close) = r.find(']') else {
                return rest;
            };
            let Ok(i) = r[..close].parse() else {
                return rest;
            };
            out.push(Seg::Index(i));
            rest = &r[close + 1..];
        }
        match rest.strip_prefix('.') {
            Some(r) if r.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') => rest = r,
            _ => return rest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Seg::{Index, Key};
    use super::*;

    const FILE: &str = r#"listen: 127.0.0.1:9770
# receivers
receivers:
  - name: hook
    webhook: { url: "ftp://x" }
  - name: hook2

    dingtalk:
      url: "https://example"
      secret: "s"
route:
  receivers: [nope]
  routes:
    - match: { owner: a }
      receivers:
        - hook
        - name
ingest:
  max_body: -5
"#;

    #[test]
    fn paths_are_found_at_their_lines() {
        let l = Locator::new(FILE);
        let at = |p: &[Seg<'_>]| l.line(p);
        assert_eq!(at(&[Key("listen")]), Some(1));
        assert_eq!(at(&[Key("receivers")]), Some(3));
        assert_eq!(at(&[Key("receivers"), Index(0)]), Some(4));
        assert_eq!(at(&[Key("receivers"), Index(0), Key("name")]), Some(4));
        assert_eq!(at(&[Key("receivers"), Index(0), Key("webhook")]), Some(5));
        // Inside a flow mapping: its line.
        assert_eq!(
            at(&[Key("receivers"), Index(0), Key("webhook"), Key("url")]),
            Some(5)
        );
        assert_eq!(at(&[Key("receivers"), Index(1)]), Some(6));
        assert_eq!(
            at(&[Key("receivers"), Index(1), Key("dingtalk"), Key("secret")]),
            Some(10)
        );
        // A key of another item is not this item's.
        assert_eq!(at(&[Key("receivers"), Index(0), Key("dingtalk")]), Some(4));
        assert_eq!(at(&[Key("receivers"), Index(2)]), Some(3));
        assert_eq!(at(&[Key("route"), Key("receivers")]), Some(12));
        assert_eq!(
            at(&[
                Key("route"),
                Key("routes"),
                Index(0),
                Key("receivers"),
                Index(1)
            ]),
            Some(17)
        );
        // `receivers` under route's first route, not the top-level one.
        assert_eq!(
            at(&[Key("route"), Key("routes"), Index(0), Key("match")]),
            Some(14)
        );
        assert_eq!(at(&[Key("ingest"), Key("max_body")]), Some(19));
        // Not in the file (a default): nothing, or the deepest step found.
        assert_eq!(at(&[Key("retention")]), None);
        assert_eq!(at(&[Key("ingest"), Key("token")]), Some(18));
    }

    #[test]
    fn problems_give_their_paths() {
        let p = problem_path;
        assert_eq!(
            p(r#"receivers[0] ("hook"): webhook.url "ftp://x" must be http(s)"#),
            vec![Key("receivers"), Index(0), Key("webhook"), Key("url")]
        );
        assert_eq!(
            p("ingest.max_body: invalid size \"-5\""),
            vec![Key("ingest"), Key("max_body")]
        );
        assert_eq!(
            p(r#"services[2] ("x").window: given without an objective"#),
            vec![Key("services"), Index(2), Key("window")]
        );
        assert_eq!(
            p("route.routes[1].receivers: no receiver named \"a\""),
            vec![Key("route"), Key("routes"), Index(1), Key("receivers")]
        );
        assert_eq!(
            p(r#"receivers[1] ("hook"): duplicate receiver name"#),
            vec![Key("receivers"), Index(1), Key("duplicate")]
        );
        assert_eq!(p("1 problem"), vec![]);
        assert_eq!(p(""), vec![]);
        assert_eq!(p("a[x"), vec![Key("a")]);
        assert_eq!(p("a[99999999999999999999999]"), vec![Key("a")]);
    }

    #[test]
    fn odd_text_does_not_panic() {
        for text in [
            "",
            "-",
            "- -",
            "a:\n  -\n  - b",
            "\t- x:\n\t\t- y",
            "é: [\n",
            "  - - - a: 1",
        ] {
            let l = Locator::new(text);
            for p in [
                vec![Key("a"), Index(1), Key("b")],
                vec![Index(0), Index(0)],
                vec![Key("é")],
            ] {
                let _ = l.line(&p);
            }
        }
    }
}
