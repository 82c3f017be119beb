//! The FHIRPath subset that the R4B SearchParameter expressions use.
//!
//! Paths with choice elements (`Observation.value`), unions (`|`), indexers (`[0]`), `as` / `is`
//! (operators and functions), `ofType`, `where(...)`, `resolve() is Type`, `extension('url')`,
//! `exists()`, `=`, `!=`, `and`, `or`, string and boolean literals. An expression that uses
//! anything else fails to parse, and the search parameter is reported as not covered.

use super::json::Json;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// An identifier at the start of a path: a type name or an element of the focus.
    Ident(String),
    Member(Box<Expr>, String),
    Index(Box<Expr>, usize),
    /// A function call on a focus (`This` for a bare call such as `resolve()`).
    Call(Box<Expr>, String, Vec<Expr>),
    As(Box<Expr>, String),
    Is(Box<Expr>, String),
    Union(Vec<Expr>),
    Eq(Box<Expr>, Box<Expr>, bool),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Str(String),
    Bool(bool),
    This,
}

/// One value produced by evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<'a> {
    /// A JSON value, with its type when it came from a choice element (`valueQuantity`).
    Node(&'a Json, Option<String>),
    Bool(bool),
    Str(String),
    /// The target of `resolve()`: the referenced resource type, when the reference names one.
    Resolved(Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(usize),
    Sym(&'static str),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'\'' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err("unterminated string".into()),
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            if let Some(&n) = b.get(i + 1) {
                                v.push(n as char);
                            }
                            i += 2;
                        }
                        Some(_) => {
                            let ch = s[i..].chars().next().ok_or("bad string")?;
                            v.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            b'`' => {
                let end = s[i + 1..].find('`').ok_or("unterminated identifier")?;
                out.push(Tok::Ident(s[i + 1..i + 1 + end].to_owned()));
                i += end + 2;
            }
            b'0'..=b'9' => {
                let start = i;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                out.push(Tok::Num(s[start..i].parse().map_err(|_| "bad number")?));
            }
            b'!' if b.get(i + 1) == Some(&b'=') => {
                out.push(Tok::Sym("!="));
                i += 2;
            }
            b'.' | b'(' | b')' | b'[' | b']' | b'|' | b'=' | b',' => {
                let sym = match c {
                    b'.' => ".",
                    b'(' => "(",
                    b')' => ")",
                    b'[' => "[",
                    b']' => "]",
                    b'|' => "|",
                    b'=' => "=",
                    _ => ",",
                };
                out.push(Tok::Sym(sym));
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while b
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                {
                    i += 1;
                }
                out.push(Tok::Ident(s[start..i].to_owned()));
            }
            _ => return Err(format!("unsupported character '{}'", c as char)),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    i: usize,
}

/// Parse an expression of the supported subset.
pub fn parse(s: &str) -> Result<Expr, String> {
    let mut p = Parser {
        toks: tokenize(s)?,
        i: 0,
    };
    let e = p.or()?;
    if p.i != p.toks.len() {
        return Err(format!("unexpected {:?}", p.toks[p.i]));
    }
    Ok(e)
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(x)) if x == kw) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.toks.get(self.i) {
            Some(Tok::Ident(s)) => {
                self.i += 1;
                Ok(s.clone())
            }
            other => Err(format!("expected a name, found {other:?}")),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.eat_kw("or") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.eq()?;
        while self.eat_kw("and") {
            e = Expr::And(Box::new(e), Box::new(self.eq()?));
        }
        Ok(e)
    }

    fn eq(&mut self) -> Result<Expr, String> {
        let e = self.union()?;
        if self.eat_sym("=") {
            return Ok(Expr::Eq(Box::new(e), Box::new(self.union()?), false));
        }
        if self.eat_sym("!=") {
            return Ok(Expr::Eq(Box::new(e), Box::new(self.union()?), true));
        }
        Ok(e)
    }

    fn union(&mut self) -> Result<Expr, String> {
        let mut parts = vec![self.typeop()?];
        while self.eat_sym("|") {
            parts.push(self.typeop()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Union(parts)
        })
    }

    fn typeop(&mut self) -> Result<Expr, String> {
        let e = self.postfix()?;
        if self.eat_kw("as") {
            return Ok(Expr::As(Box::new(e), self.ident()?));
        }
        if self.eat_kw("is") {
            return Ok(Expr::Is(Box::new(e), self.ident()?));
        }
        Ok(e)
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let mut e = self.primary()?;
        loop {
            if self.eat_sym(".") {
                let name = self.ident()?;
                e = self.invocation(e, name)?;
            } else if self.eat_sym("[") {
                let Some(Tok::Num(n)) = self.toks.get(self.i).cloned() else {
                    return Err("expected an index".into());
                };
                self.i += 1;
                if !self.eat_sym("]") {
                    return Err("expected ']'".into());
                }
                e = Expr::Index(Box::new(e), n);
            } else {
                return Ok(e);
            }
        }
    }

    fn invocation(&mut self, focus: Expr, name: String) -> Result<Expr, String> {
        if !self.eat_sym("(") {
            return Ok(match focus {
                Expr::This => Expr::Ident(name),
                f => Expr::Member(Box::new(f), name),
            });
        }
        let mut args = Vec::new();
        if !self.eat_sym(")") {
            loop {
                args.push(self.or()?);
                if self.eat_sym(")") {
                    break;
                }
                if !self.eat_sym(",") {
                    return Err("expected ',' or ')'".into());
                }
            }
        }
        match (name.as_str(), args.as_slice()) {
            ("as" | "ofType", [Expr::Ident(t)]) => Ok(Expr::As(Box::new(focus), t.clone())),
            ("is", [Expr::Ident(t)]) => Ok(Expr::Is(Box::new(focus), t.clone())),
            ("where" | "exists" | "resolve" | "extension", _) => {
                Ok(Expr::Call(Box::new(focus), name, args))
            }
            _ => Err(format!("unsupported function {name}()")),
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        match self.toks.get(self.i).cloned() {
            Some(Tok::Sym("(")) => {
                self.i += 1;
                let e = self.or()?;
                if !self.eat_sym(")") {
                    return Err("expected ')'".into());
                }
                Ok(e)
            }
            Some(Tok::Str(s)) => {
                self.i += 1;
                Ok(Expr::Str(s))
            }
            Some(Tok::Ident(s)) if s == "true" || s == "false" => {
                self.i += 1;
                Ok(Expr::Bool(s == "true"))
            }
            Some(Tok::Ident(name)) => {
                self.i += 1;
                self.invocation(Expr::This, name)
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

/// Evaluate `expr` against a resource.
pub fn evaluate<'a>(expr: &Expr, resource: &'a Json) -> Vec<Item<'a>> {
    let rt = resource
        .get("resourceType")
        .and_then(Json::as_str)
        .unwrap_or("");
    let ctx = Ctx { resource_type: rt };
    ctx.eval(expr, &[Item::Node(resource, None)], true)
}

struct Ctx<'r> {
    resource_type: &'r str,
}

fn is_type_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
}

/// The type suffix of a choice member name: `valueQuantity` for `value` → `Quantity`.
fn choice_suffix<'k>(key: &'k str, name: &str) -> Option<&'k str> {
    let rest = key.strip_prefix(name)?;
    let first = rest.chars().next()?;
    if !first.is_ascii_uppercase() {
        return None;
    }
    let lower = format!("{}{}", first.to_ascii_lowercase(), &rest[1..]);
    use super::definitions::{DEFINITIONS, Kind};
    match DEFINITIONS.kind(rest).or_else(|| DEFINITIONS.kind(&lower)) {
        Some(Kind::Complex | Kind::Primitive) => Some(rest),
        _ => None,
    }
}

fn same_type(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn truthy(items: &[Item<'_>]) -> bool {
    items.iter().any(|i| matches!(i, Item::Bool(true)))
}

impl Ctx<'_> {
    fn eval<'a>(&self, e: &Expr, focus: &[Item<'a>], at_root: bool) -> Vec<Item<'a>> {
        match e {
            Expr::This => focus.to_vec(),
            Expr::Str(s) => vec![Item::Str(s.clone())],
            Expr::Bool(b) => vec![Item::Bool(*b)],
            Expr::Ident(name) => {
                if at_root && is_type_name(name) {
                    if name == self.resource_type || name == "Resource" || name == "DomainResource"
                    {
                        focus.to_vec()
                    } else {
                        Vec::new()
                    }
                } else {
                    members(focus, name)
                }
            }
            Expr::Member(f, name) => members(&self.eval(f, focus, at_root), name),
            Expr::Index(f, n) => self
                .eval(f, focus, at_root)
                .into_iter()
                .nth(*n)
                .into_iter()
                .collect(),
            Expr::Union(parts) => {
                let mut out: Vec<Item<'a>> = Vec::new();
                for p in parts {
                    for it in self.eval(p, focus, at_root) {
                        if !out.contains(&it) {
                            out.push(it);
                        }
                    }
                }
                out
            }
            Expr::As(f, t) => self
                .eval(f, focus, at_root)
                .into_iter()
                .filter(|i| match i {
                    Item::Node(_, Some(ty)) => same_type(ty, t),
                    Item::Node(_, None) => true,
                    _ => false,
                })
                .collect(),
            Expr::Is(f, t) => {
                let items = self.eval(f, focus, at_root);
                let hit = items.iter().any(|i| match i {
                    Item::Resolved(Some(ty)) => ty == t,
                    Item::Node(_, Some(ty)) => same_type(ty, t),
                    _ => false,
                });
                vec![Item::Bool(hit)]
            }
            Expr::Eq(a, b, negate) => {
                let l = self.eval(a, focus, at_root);
                let r = self.eval(b, focus, at_root);
                if l.is_empty() || r.is_empty() {
                    return Vec::new();
                }
                let equal = l.len() == r.len() && l.iter().zip(&r).all(|(x, y)| prim_eq(x, y));
                vec![Item::Bool(equal != *negate)]
            }
            Expr::And(a, b) => {
                vec![Item::Bool(
                    truthy(&self.eval(a, focus, at_root)) && truthy(&self.eval(b, focus, at_root)),
                )]
            }
            Expr::Or(a, b) => {
                vec![Item::Bool(
                    truthy(&self.eval(a, focus, at_root)) || truthy(&self.eval(b, focus, at_root)),
                )]
            }
            Expr::Call(f, name, args) => {
                let items = self.eval(f, focus, at_root);
                match name.as_str() {
                    "exists" => vec![Item::Bool(!items.is_empty())],
                    "where" => match args.first() {
                        Some(cond) => items
                            .into_iter()
                            .filter(|it| truthy(&self.eval(cond, std::slice::from_ref(it), false)))
                            .collect(),
                        None => items,
                    },
                    "resolve" => items
                        .iter()
                        .filter_map(|i| match i {
                            Item::Node(j, _) => Some(Item::Resolved(reference_type(j))),
                            _ => None,
                        })
                        .collect(),
                    "extension" => {
                        let url = match args.first() {
                            Some(Expr::Str(u)) => u.as_str(),
                            _ => return Vec::new(),
                        };
                        members(&items, "extension")
                            .into_iter()
                            .filter(|i| match i {
                                Item::Node(j, _) => {
                                    j.get("url").and_then(Json::as_str) == Some(url)
                                }
                                _ => false,
                            })
                            .collect()
                    }
                    _ => Vec::new(),
                }
            }
        }
    }
}

fn prim_eq(a: &Item<'_>, b: &Item<'_>) -> bool {
    let text = |i: &Item<'_>| -> Option<String> {
        match i {
            Item::Node(Json::String(s), _) | Item::Str(s) => Some(s.clone()),
            Item::Node(Json::Bool(b), _) | Item::Bool(b) => Some(b.to_string()),
            Item::Node(Json::Number(n), _) => Some(n.clone()),
            _ => None,
        }
    };
    matches!((text(a), text(b)), (Some(x), Some(y)) if x == y)
}

/// The resource type a Reference (or reference string) points at, when it says.
pub fn reference_type(j: &Json) -> Option<String> {
    if let Some(t) = j.get("type").and_then(Json::as_str) {
        return Some(t.to_owned());
    }
    let r = match j {
        Json::String(s) => s.as_str(),
        _ => j.get("reference").and_then(Json::as_str)?,
    };
    split_reference(r).map(|(t, _)| t)
}

/// Split a reference into (type, id): `Patient/1`, `http://host/fhir/Patient/1/_history/2`.
/// `None` for contained (`#x`) and `urn:` references and for URLs without a resource type.
pub fn split_reference(r: &str) -> Option<(String, String)> {
    if r.starts_with('#') || r.starts_with("urn:") {
        return None;
    }
    let path = r.split(['?', '#']).next().unwrap_or("");
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let segs = match segs.iter().position(|s| *s == "_history") {
        Some(h) => &segs[..h],
        None => &segs[..],
    };
    match segs {
        [.., t, id] if huimin_model::is_resource_type(t) => {
            Some(((*t).to_owned(), (*id).to_owned()))
        }
        _ => None,
    }
}

fn members<'a>(focus: &[Item<'a>], name: &str) -> Vec<Item<'a>> {
    let mut out = Vec::new();
    for it in focus {
        let Item::Node(Json::Object(m), _) = it else {
            continue;
        };
        let mut push = |v: &'a Json, ty: Option<String>| match v {
            Json::Array(a) => out.extend(a.iter().map(|x| Item::Node(x, ty.clone()))),
            Json::Null => {}
            v => out.push(Item::Node(v, ty)),
        };
        if let Some((_, v)) = m.iter().find(|(k, _)| k == name) {
            push(v, None);
            continue;
        }
        for (k, v) in m {
            if let Some(suffix) = choice_suffix(k, name) {
                push(v, Some(suffix.to_owned()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval_strings(expr: &str, json: &str) -> Vec<String> {
        let j = Json::parse(json.as_bytes()).unwrap();
        let e = parse(expr).unwrap();
        evaluate(&e, &j)
            .into_iter()
            .map(|i| match i {
                Item::Node(n, _) => String::from_utf8(n.to_bytes()).unwrap(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn paths_unions_and_types() {
        let p = r#"{"resourceType":"Patient","birthDate":"1980","name":[{"given":["a","b"]},{"given":["c"]}]}"#;
        assert_eq!(
            eval_strings("Patient.name.given", p),
            ["\"a\"", "\"b\"", "\"c\""]
        );
        assert_eq!(
            eval_strings("Patient.birthDate | Person.birthDate", p),
            ["\"1980\""]
        );
        assert!(eval_strings("Person.birthDate", p).is_empty());
        assert_eq!(
            eval_strings("Resource.id", r#"{"resourceType":"Patient","id":"x"}"#),
            ["\"x\""]
        );
        let o = r#"{"resourceType":"Observation","valueQuantity":{"value":1},"effectiveDateTime":"2020"}"#;
        assert_eq!(
            eval_strings("(Observation.value as Quantity)", o),
            [r#"{"value":1}"#]
        );
        assert!(eval_strings("(Observation.value as CodeableConcept)", o).is_empty());
        assert_eq!(
            eval_strings("Observation.effective.as(dateTime)", o),
            ["\"2020\""]
        );
        assert_eq!(
            eval_strings("Observation.value.ofType(Quantity)", o).len(),
            1
        );
    }

    #[test]
    fn where_resolve_and_extension() {
        let o = r#"{"resourceType":"Observation","subject":{"reference":"Patient/1"},
            "performer":[{"reference":"Practitioner/2"},{"reference":"http://x/fhir/Patient/3/_history/1"}],
            "extension":[{"url":"u1","valueString":"a"},{"url":"u2","valueString":"b"}],
            "component":[{"code":{"text":"x"}},{"code":{"text":"y"}}]}"#;
        assert_eq!(
            eval_strings("Observation.subject.where(resolve() is Patient)", o).len(),
            1
        );
        assert!(eval_strings("Observation.subject.where(resolve() is Group)", o).is_empty());
        assert_eq!(
            eval_strings("Observation.performer.where(resolve() is Patient)", o).len(),
            1
        );
        assert_eq!(
            eval_strings("Observation.extension('u2').value", o),
            ["\"b\""]
        );
        assert_eq!(
            eval_strings("Observation.component.where(code.text='y').code", o),
            [r#"{"text":"y"}"#]
        );
        assert_eq!(
            eval_strings("Observation.component[1].code.text", o),
            ["\"y\""]
        );
        let d = r#"{"resourceType":"Patient","deceasedBoolean":false}"#;
        assert_eq!(
            eval_strings("Patient.deceased.exists() and Patient.deceased != false", d),
            ["Bool(false)"]
        );
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        assert!(parse("Patient.name.first()").is_err());
        assert!(parse("Patient.age > 3").is_err());
    }
}
