//! A report as structure — headings, paragraphs, lists, tables — written out as Markdown (for
//! chat and files) and as HTML (for e-mail) from the same blocks, every text escaped for the
//! format it goes into.

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Heading(u8, String),
    Para(String),
    List(Vec<String>),
    Table(Vec<String>, Vec<Vec<String>>),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Doc {
    pub blocks: Vec<Block>,
}

impl Doc {
    pub fn h(&mut self, level: u8, text: impl Into<String>) {
        self.blocks.push(Block::Heading(level, text.into()));
    }

    pub fn p(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Para(text.into()));
    }

    pub fn list(&mut self, items: Vec<String>) {
        self.blocks.push(Block::List(items));
    }

    pub fn table(&mut self, head: &[&str], rows: Vec<Vec<String>>) {
        self.blocks.push(Block::Table(
            head.iter().map(|s| s.to_string()).collect(),
            rows,
        ));
    }

    /// A table, or the paragraph `empty` when there is no row.
    pub fn table_or(&mut self, head: &[&str], rows: Vec<Vec<String>>, empty: &str) {
        if rows.is_empty() {
            self.p(empty);
        } else {
            self.table(head, rows);
        }
    }

    pub fn markdown(&self) -> String {
        let mut o = String::new();
        for b in &self.blocks {
            match b {
                Block::Heading(l, t) => {
                    let _ = writeln!(o, "{} {}\n", "#".repeat(*l as usize), md(t));
                }
                Block::Para(t) => {
                    let _ = writeln!(o, "{}\n", md(t));
                }
                Block::List(items) => {
                    for i in items {
                        let _ = writeln!(o, "- {}", md(i));
                    }
                    o.push('\n');
                }
                Block::Table(head, rows) => {
                    let _ = writeln!(
                        o,
                        "| {} |",
                        head.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | ")
                    );
                    let _ = writeln!(o, "|{}", "---|".repeat(head.len()));
                    for r in rows {
                        let _ = writeln!(
                            o,
                            "| {} |",
                            r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
                        );
                    }
                    o.push('\n');
                }
            }
        }
        o
    }

    pub fn html(&self, title: &str) -> String {
        let mut o = format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title>\
             <style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}\
             td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}</style></head><body>",
            html(title)
        );
        for b in &self.blocks {
            match b {
                Block::Heading(l, t) => {
                    let l = (*l).clamp(1, 6);
                    let _ = write!(o, "<h{l}>{}</h{l}>", html(t));
                }
                Block::Para(t) => {
                    let _ = write!(o, "<p>{}</p>", html(t));
                }
                Block::List(items) => {
                    o.push_str("<ul>");
                    for i in items {
                        let _ = write!(o, "<li>{}</li>", html(i));
                    }
                    o.push_str("</ul>");
                }
                Block::Table(head, rows) => {
                    o.push_str("<table><tr>");
                    for h in head {
                        let _ = write!(o, "<th>{}</th>", html(h));
                    }
                    o.push_str("</tr>");
                    for r in rows {
                        o.push_str("<tr>");
                        for c in r {
                            let _ = write!(o, "<td>{}</td>", html(c));
                        }
                        o.push_str("</tr>");
                    }
                    o.push_str("</table>");
                }
            }
        }
        o.push_str("</body></html>\n");
        o
    }
}

/// Text from labels, rules and people, made inert in Markdown: no link, image, HTML or line
/// of its own.
fn md(s: &str) -> String {
    tocsin_model::markdown_inert(s)
}

fn cell(s: &str) -> String {
    md(s).replace('|', "\\|")
}

pub(crate) fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_blocks_in_markdown_and_html_with_text_made_inert() {
        let mut d = Doc::default();
        d.h(2, "Incidents");
        d.p("web [click](http://evil) <b>");
        d.table(&["rule", "n"], vec![vec!["A|B".into(), "2".into()]]);
        d.list(vec!["one".into()]);
        let md = d.markdown();
        assert!(md.contains("## Incidents\n"));
        assert!(md.contains("web ［click］(http://evil) ＜b＞"), "{md}");
        assert!(md.contains("| A\\|B | 2 |"), "{md}");
        assert!(md.contains("- one\n"));
        let h = d.html("T & U");
        assert!(h.contains("<title>T &amp; U</title>"));
        assert!(
            h.contains("<p>web [click](http://evil) &lt;b&gt;</p>"),
            "{h}"
        );
        assert!(h.contains("<td>A|B</td><td>2</td>"));
    }
}
