//! Templates that place a file inside the store: `{device}/{year}/{month}/{name}`.

use std::fmt;

use super::names::{sanitize_component, split_ext};

/// The default layout: one folder per device, then year and month of capture.
pub const DEFAULT_TEMPLATE: &str = "{device}/{year}/{month}/{name}";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Device,
    Year,
    Month,
    Day,
    Category,
    Name,
    Stem,
    Ext,
    Hash8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Token(Token),
}

/// A parsed template: path components, each a sequence of text and tokens.
#[derive(Clone, Debug)]
pub struct Template {
    components: Vec<Vec<Piece>>,
}

/// Everything a template can refer to, for one file.
pub struct Fields<'a> {
    pub device: &'a str,
    pub date: jiff::civil::DateTime,
    pub category: &'a str,
    /// The file's name on the source (untrusted).
    pub name: &'a str,
    pub hash: &'a blake3::Hash,
}

#[derive(Debug, PartialEq, Eq)]
pub struct TemplateError(String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateError {}

impl Template {
    /// Parses a template. Errors name the problem: an unknown token, an unclosed
    /// brace, an absolute path, an empty component, or a template that does not
    /// name the file (no `{name}`, `{stem}` or `{hash8}` in the last component would
    /// put every photo of a month under one name).
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let err = |m: String| TemplateError(format!("template {source:?}: {m}"));
        if source.starts_with('/') || source.starts_with('\\') {
            return Err(err("must be relative to the store (no leading /)".into()));
        }
        let mut components = Vec::new();
        for comp in source.split('/') {
            if comp.is_empty() {
                return Err(err("has an empty folder name (`//` or a trailing /)".into()));
            }
            if comp == "." || comp == ".." {
                return Err(err("may not contain `.` or `..`".into()));
            }
            let mut pieces = Vec::new();
            let mut rest = comp;
            while let Some(open) = rest.find('{') {
                if open > 0 {
                    pieces.push(Piece::Text(rest[..open].to_string()));
                }
                let close = rest[open..]
                    .find('}')
                    .ok_or_else(|| err("has a `{` without its `}`".into()))?
                    + open;
                let token = match &rest[open + 1..close] {
                    "device" => Token::Device,
                    "year" => Token::Year,
                    "month" => Token::Month,
                    "day" => Token::Day,
                    "category" => Token::Category,
                    "name" => Token::Name,
                    "stem" => Token::Stem,
                    "ext" => Token::Ext,
                    "hash8" => Token::Hash8,
                    other => {
                        return Err(err(format!(
                            "unknown token {{{other}}}; known: {{device}} {{year}} {{month}} \
                             {{day}} {{category}} {{name}} {{stem}} {{ext}} {{hash8}}"
                        )))
                    }
                };
                pieces.push(Piece::Token(token));
                rest = &rest[close + 1..];
            }
            if rest.contains('}') {
                return Err(err("has a `}` without its `{`".into()));
            }
            if !rest.is_empty() {
                pieces.push(Piece::Text(rest.to_string()));
            }
            components.push(pieces);
        }
        let last = components.last().expect("split yields at least one");
        if !last
            .iter()
            .any(|p| matches!(p, Piece::Token(Token::Name | Token::Stem | Token::Hash8)))
        {
            return Err(err(
                "the last part must contain {name}, {stem} or {hash8}, or files would collide"
                    .into(),
            ));
        }
        Ok(Template { components })
    }

    /// Renders the store-relative path for one file: every component sanitised on
    /// its own, so that no value (a device name with `/`, a file name `..`) can add
    /// or climb a level.
    pub fn render(&self, f: &Fields) -> String {
        let (stem, ext) = split_ext(f.name);
        let ext = ext.strip_prefix('.').unwrap_or(ext);
        let mut out = String::new();
        for (i, comp) in self.components.iter().enumerate() {
            let mut s = String::new();
            for piece in comp {
                match piece {
                    Piece::Text(t) => s.push_str(t),
                    Piece::Token(t) => match t {
                        Token::Device => s.push_str(f.device),
                        Token::Year => s.push_str(&format!("{:04}", f.date.year())),
                        Token::Month => s.push_str(&format!("{:02}", f.date.month())),
                        Token::Day => s.push_str(&format!("{:02}", f.date.day())),
                        Token::Category => s.push_str(f.category),
                        Token::Name => s.push_str(f.name),
                        Token::Stem => s.push_str(stem),
                        Token::Ext => s.push_str(ext),
                        Token::Hash8 => s.push_str(&f.hash.to_hex()[..8]),
                    },
                }
            }
            if i > 0 {
                out.push('/');
            }
            out.push_str(&sanitize_component(&s));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(name: &'a str, device: &'a str, hash: &'a blake3::Hash) -> Fields<'a> {
        Fields {
            device,
            date: jiff::civil::date(2024, 3, 7).at(9, 5, 0, 0),
            category: "photo",
            name,
            hash,
        }
    }

    #[test]
    fn default_layout() {
        let h = blake3::hash(b"x");
        let t = Template::parse(DEFAULT_TEMPLATE).unwrap();
        assert_eq!(
            t.render(&fields("IMG_1.HEIC", "Pixel 8", &h)),
            "Pixel 8/2024/03/IMG_1.HEIC"
        );
    }

    #[test]
    fn every_token() {
        let h = blake3::hash(b"x");
        let t = Template::parse("{category}/{year}-{month}-{day}/{stem}_{hash8}.{ext}").unwrap();
        let hex = h.to_hex();
        assert_eq!(
            t.render(&fields("a.b.jpg", "d", &h)),
            format!("photo/2024-03-07/a.b_{}.jpg", &hex[..8])
        );
    }

    #[test]
    fn values_cannot_climb_or_add_levels() {
        let h = blake3::hash(b"x");
        let t = Template::parse(DEFAULT_TEMPLATE).unwrap();
        let p = t.render(&fields("..", "../../etc", &h));
        assert_eq!(p, "___.._etc/2024/03/__");
        assert!(!p.split('/').any(|c| c == ".." || c.is_empty()));
        let p = t.render(&fields("a/../../b", "x/y", &h));
        assert_eq!(p.split('/').count(), 4, "{p}");
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            "/abs/{name}",
            "{year}//{name}",
            "{year}/../{name}",
            "{nope}/{name}",
            "{year}/{month",
            "{year}/}",
            "{device}/{year}",
            "{name}/",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
