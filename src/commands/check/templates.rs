//! `check --format` / `--healthy-format` templates.

use std::time::Duration;

use crate::tahoe::CheckReport;

/// The values a template can show.
pub(super) struct Fields<'a> {
    pub(super) backup: &'a str,
    pub(super) path: &'a str,
    pub(super) kind: &'a str,
    pub(super) report: &'a CheckReport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Backup,
    Path,
    Type,
    Summary,
    Good,
    Needed,
    Expected,
}

impl Field {
    const ALL: [(&'static str, Field); 7] = [
        ("backup", Field::Backup),
        ("path", Field::Path),
        ("type", Field::Type),
        ("summary", Field::Summary),
        ("good", Field::Good),
        ("needed", Field::Needed),
        ("expected", Field::Expected),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
    Text(String),
    Field(Field),
}

/// A `--format` template: text with `{placeholder}`s; `{{` and `}}` are
/// literal braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Template(Vec<Part>);

impl Template {
    pub(super) fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => {
                                return Err(
                                    "a \"{\" is not closed (write \"{{\" for a brace)".into()
                                );
                            }
                        }
                    }
                    let field = Field::ALL
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, f)| *f)
                        .ok_or_else(|| {
                            format!(
                                "unknown placeholder {{{name}}}; the placeholders are {}",
                                Field::ALL
                                    .iter()
                                    .map(|(n, _)| format!("{{{n}}}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })?;
                    if !lit.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Field(field));
                }
                '}' => return Err("a lone \"}\" (write \"}}\" for a brace)".into()),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(Template(parts))
    }

    pub(super) fn render(&self, f: &Fields<'_>) -> String {
        let count = |n: Option<u32>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(Field::Backup) => out.push_str(f.backup),
                Part::Field(Field::Path) => out.push_str(f.path),
                Part::Field(Field::Type) => out.push_str(f.kind),
                Part::Field(Field::Summary) => out.push_str(&f.report.summary),
                Part::Field(Field::Good) => out.push_str(&count(f.report.shares_good)),
                Part::Field(Field::Needed) => out.push_str(&count(f.report.shares_needed)),
                Part::Field(Field::Expected) => out.push_str(&count(f.report.shares_expected)),
            }
        }
        out
    }
}

/// A duration for messages: `0.001 s`, `1.5 s`, `90 s`.
pub(super) fn show_duration(d: Duration) -> String {
    let text = format!("{:.3}", d.as_secs_f64());
    format!("{} s", text.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(healthy: bool) -> CheckReport {
        CheckReport {
            healthy,
            recoverable: healthy,
            summary: "Not Healthy: 1 shares (enc 2-of-3)".into(),
            shares_good: Some(1),
            shares_needed: Some(2),
            shares_expected: None,
            repair_attempted: false,
            repair_successful: false,
        }
    }

    #[test]
    fn templates_render_and_refuse_unknown_placeholders() {
        let t =
            Template::parse("{backup} {path} ({type}): {summary} {good}/{needed}/{expected} {{x}}")
                .unwrap();
        let r = report(false);
        let line = t.render(&Fields {
            backup: "home",
            path: "/a/b",
            kind: "file",
            report: &r,
        });
        assert_eq!(
            line,
            "home /a/b (file): Not Healthy: 1 shares (enc 2-of-3) 1/2/- {x}"
        );
        for bad in ["{0[path]}", "{backup", "x }", "{cap}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        let err = Template::parse("{cap}").unwrap_err();
        assert!(
            err.contains("{backup}") && err.contains("{expected}"),
            "{err}"
        );
    }
}
