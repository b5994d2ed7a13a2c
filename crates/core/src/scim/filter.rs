//! SCIM filters (RFC 7644 §3.4.2.2), separate from the OData ones: a parser to a syntax
//! tree of attribute paths, and its resolution against a resource type's schema to a typed
//! [`Cond`] that a store translates to SQL (with bound parameters) and that PATCH value
//! filters evaluate in memory.
//!
//! Supported: `eq ne co sw ew gt ge lt le pr`, `and or not`, parentheses, value paths
//! (`emails[type eq "work" and value co "@example.com"]`, also followed by `.value`),
//! URN-qualified attribute names, and case-insensitive attribute names and operators.

use super::schema::{self, AttrType, Attribute, ResourceType};
use crate::error::{DomainError, Result, ScimType};
use jiff::Timestamp;
use serde_json::Value;

fn invalid(msg: impl Into<String>) -> DomainError {
    DomainError::scim(ScimType::InvalidFilter, msg)
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Contains.
    Co,
    /// Starts with.
    Sw,
    /// Ends with.
    Ew,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
    /// Present (has a non-empty value).
    Pr,
}

impl Op {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "co" => Self::Co,
            "sw" => Self::Sw,
            "ew" => Self::Ew,
            "gt" => Self::Gt,
            "ge" => Self::Ge,
            "lt" => Self::Lt,
            "le" => Self::Le,
            "pr" => Self::Pr,
            _ => return None,
        })
    }
}

/// A literal in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `"text"`.
    String(String),
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Number(f64),
    /// `null`.
    Null,
}

/// A parsed filter: attribute paths as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Both.
    And(Box<Filter>, Box<Filter>),
    /// Either.
    Or(Box<Filter>, Box<Filter>),
    /// Negation.
    Not(Box<Filter>),
    /// `attr op value` (or `attr pr`, with [`Literal::Null`]).
    Compare(String, Op, Literal),
    /// `attr[filter]`: some value of a multi-valued attribute matches `filter`, whose
    /// paths name sub-attributes.
    ValuePath(String, Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Str(String),
    Word(String),
}

fn lex(s: &str) -> Result<Vec<Token>> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '[' => {
                out.push(Token::OpenBracket);
                i += 1;
            }
            ']' => {
                out.push(Token::CloseBracket);
                i += 1;
            }
            '"' => {
                // A JSON string: find its end, honouring escapes, and decode it as JSON.
                let start = i;
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(invalid("a string literal is not closed")),
                        Some('\\') => i += 2,
                        Some('"') => break,
                        Some(_) => i += 1,
                    }
                }
                let raw: String = chars[start..=i].iter().collect();
                let text: String = serde_json::from_str(&raw)
                    .map_err(|_| invalid(format!("{raw} is not a valid string literal")))?;
                out.push(Token::Str(text));
                i += 1;
            }
            _ => {
                let start = i;
                while let Some(&c) = chars.get(i) {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"') {
                        break;
                    }
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

/// Nesting (parentheses, `not`, value paths) and comparisons a filter may hold: enough for
/// any identity provider, small enough to bound the SQL it becomes.
const MAX_DEPTH: usize = 32;
const MAX_TERMS: usize = 64;

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    terms: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn or(&mut self) -> Result<Filter> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(invalid(format!(
                "the filter nests deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    fn group(&mut self) -> Result<Filter> {
        self.enter()?;
        let inner = self.or()?;
        self.depth -= 1;
        match self.next() {
            Some(Token::Close) => Ok(inner),
            _ => Err(invalid("a `(` is not closed")),
        }
    }

    fn unary(&mut self) -> Result<Filter> {
        if self.keyword("not") && self.tokens.get(self.pos + 1) == Some(&Token::Open) {
            self.pos += 2;
            return Ok(Filter::Not(Box::new(self.group()?)));
        }
        match self.next() {
            Some(Token::Open) => self.group(),
            Some(Token::Word(path)) => self.attr_expr(path),
            Some(t) => Err(invalid(format!(
                "expected an attribute, found {}",
                show(&t)
            ))),
            None => Err(invalid("the filter ends too early")),
        }
    }

    fn attr_expr(&mut self, path: String) -> Result<Filter> {
        if path.eq_ignore_ascii_case("and") || path.eq_ignore_ascii_case("or") {
            return Err(invalid(format!("expected an attribute, found `{path}`")));
        }
        if self.peek() == Some(&Token::OpenBracket) {
            self.pos += 1;
            self.enter()?;
            let inner = self.or()?;
            self.depth -= 1;
            if self.next() != Some(Token::CloseBracket) {
                return Err(invalid(format!("`{path}[` is not closed")));
            }
            // `emails[type eq "work"].value eq "x"`: the value path, then a comparison of
            // one of its sub-attributes.
            if let Some(Token::Word(w)) = self.peek()
                && let Some(sub) = w.strip_prefix('.')
            {
                let sub = sub.to_string();
                self.pos += 1;
                let cmp = self.comparison(sub)?;
                return Ok(Filter::ValuePath(
                    path,
                    Box::new(Filter::And(Box::new(inner), Box::new(cmp))),
                ));
            }
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        self.comparison(path)
    }

    fn comparison(&mut self, path: String) -> Result<Filter> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(invalid(format!(
                "the filter has more than {MAX_TERMS} comparisons"
            )));
        }
        let op = match self.next() {
            Some(Token::Word(w)) => Op::parse(&w)
                .ok_or_else(|| invalid(format!("`{w}` is not a SCIM filter operator")))?,
            Some(t) => {
                return Err(invalid(format!(
                    "expected an operator after `{path}`, found {}",
                    show(&t)
                )));
            }
            None => return Err(invalid(format!("`{path}` needs an operator"))),
        };
        if op == Op::Pr {
            return Ok(Filter::Compare(path, op, Literal::Null));
        }
        let value = match self.next() {
            Some(Token::Str(s)) => Literal::String(s),
            Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                "null" => Literal::Null,
                _ => Literal::Number(
                    w.parse::<f64>()
                        .ok()
                        .filter(|n| n.is_finite())
                        .ok_or_else(|| {
                            invalid(format!(
                                "`{w}` is not a value: quote strings (\"…\"); use true, false, null or a number"
                            ))
                        })?,
                ),
            },
            Some(t) => {
                return Err(invalid(format!(
                    "expected a value after `{path}`, found {}",
                    show(&t)
                )));
            }
            None => return Err(invalid(format!("`{path}` needs a value"))),
        };
        Ok(Filter::Compare(path, op, value))
    }
}

fn show(t: &Token) -> String {
    match t {
        Token::Open => "`(`".into(),
        Token::Close => "`)`".into(),
        Token::OpenBracket => "`[`".into(),
        Token::CloseBracket => "`]`".into(),
        Token::Str(s) => format!("\"{s}\""),
        Token::Word(w) => format!("`{w}`"),
    }
}

/// Parses a filter. Errors are `400` with `scimType` `invalidFilter`.
pub fn parse(s: &str) -> Result<Filter> {
    if s.len() > 10_000 {
        return Err(invalid("the filter is longer than 10000 characters"));
    }
    let tokens = lex(s)?;
    if tokens.is_empty() {
        return Err(invalid("the filter is empty"));
    }
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
        terms: 0,
    };
    let f = p.or()?;
    match p.next() {
        None => Ok(f),
        Some(t) => Err(invalid(format!("unexpected {} in the filter", show(&t)))),
    }
}

/// A value of the store's subject row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// `id` (case-exact).
    Id,
    /// `externalId` (case-exact).
    ExternalId,
    /// `userName` (case-insensitive).
    UserName,
    /// A group's `displayName` (case-insensitive).
    DisplayName,
    /// `active`.
    Active,
    /// `meta.created`.
    Created,
    /// `meta.lastModified`.
    LastModified,
    /// `meta.resourceType` (`User` or `Group`).
    ResourceType,
}

/// What a test compares.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A column.
    Column(Column),
    /// A value of the stored SCIM document (`name.givenName` is `["name","givenName"]`;
    /// an extension attribute starts with the extension's URN).
    Doc(Vec<&'static str>),
    /// Inside [`Cond::Any`]: a sub-attribute of the element (`None`: the element itself).
    Elem(Option<&'static str>),
}

/// The list [`Cond::Any`] ranges over.
#[derive(Debug, Clone, PartialEq)]
pub enum Collection {
    /// A multi-valued attribute of the stored document (its path).
    Doc(Vec<&'static str>),
    /// A group's direct members (element `value` = member id).
    Members,
    /// A user's direct groups (element `value` = group id).
    Groups,
}

/// A typed operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// Text, compared case-insensitively unless the test says otherwise.
    Text(String),
    /// A boolean.
    Bool(bool),
    /// A datetime.
    Time(Timestamp),
    /// None (`pr`).
    None,
}

/// A resolved filter, ready for a store.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// Both.
    And(Box<Cond>, Box<Cond>),
    /// Either.
    Or(Box<Cond>, Box<Cond>),
    /// Negation (an absent value makes the inner test false, so `not` makes it true).
    Not(Box<Cond>),
    /// One comparison.
    Test {
        /// What is compared.
        field: Field,
        /// How.
        op: Op,
        /// With what.
        value: Operand,
        /// Whether text compares case-sensitively.
        case_exact: bool,
    },
    /// Some element of `over` satisfies `cond` (whose fields are [`Field::Elem`]).
    Any {
        /// The list.
        over: Collection,
        /// The test on one element.
        cond: Box<Cond>,
    },
}

fn operand(ty: AttrType, op: Op, lit: &Literal, path: &str) -> Result<Operand> {
    if op == Op::Pr {
        return Ok(Operand::None);
    }
    match ty {
        AttrType::Boolean => {
            let b = match lit {
                Literal::Bool(b) => *b,
                Literal::String(s) if s.eq_ignore_ascii_case("true") => true,
                Literal::String(s) if s.eq_ignore_ascii_case("false") => false,
                _ => {
                    return Err(invalid(format!(
                        "`{path}` is a boolean: compare it with true or false"
                    )));
                }
            };
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(invalid(format!("`{path}` is a boolean: use eq or ne")));
            }
            Ok(Operand::Bool(b))
        }
        AttrType::DateTime => {
            let Literal::String(s) = lit else {
                return Err(invalid(format!(
                    "`{path}` is a datetime: compare it with a quoted ISO 8601 datetime"
                )));
            };
            if matches!(op, Op::Co | Op::Sw | Op::Ew) {
                return Err(invalid(format!(
                    "`{path}` is a datetime: use eq, ne, gt, ge, lt or le"
                )));
            }
            let t = crate::schedule::parse_datetime(s)
                .map_err(|_| invalid(format!("`{s}` is not an ISO 8601 datetime")))?;
            Ok(Operand::Time(t))
        }
        AttrType::Complex => Err(invalid(format!(
            "`{path}` is complex: compare one of its sub-attributes"
        ))),
        AttrType::String | AttrType::Reference | AttrType::Binary => match lit {
            Literal::String(s) => Ok(Operand::Text(s.clone())),
            Literal::Number(n) => Ok(Operand::Text(n.to_string())),
            _ => Err(invalid(format!(
                "`{path}` is a string: compare it with a quoted string"
            ))),
        },
    }
}

fn test(field: Field, a: &Attribute, op: Op, lit: &Literal, path: &str) -> Result<Cond> {
    Ok(Cond::Test {
        field,
        op,
        value: operand(a.ty, op, lit, path)?,
        case_exact: a.case_exact,
    })
}

/// Resolves `f` against `rt`'s schema. `rt` `None` (a search over every resource type)
/// accepts only the common attributes and those both types share.
pub fn resolve(f: &Filter, rt: Option<ResourceType>) -> Result<Cond> {
    Ok(match f {
        Filter::And(a, b) => Cond::And(Box::new(resolve(a, rt)?), Box::new(resolve(b, rt)?)),
        Filter::Or(a, b) => Cond::Or(Box::new(resolve(a, rt)?), Box::new(resolve(b, rt)?)),
        Filter::Not(a) => Cond::Not(Box::new(resolve(a, rt)?)),
        Filter::Compare(path, op, lit) => compare(path, *op, lit, rt)?,
        Filter::ValuePath(path, inner) => {
            let (over, attr) = collection(path, rt)?;
            Cond::Any {
                over,
                cond: Box::new(resolve_elem(inner, attr, path)?),
            }
        }
    })
}

fn for_type(path: &str, rt: Option<ResourceType>) -> Result<(ResourceType, schema::Resolved)> {
    let candidates: Vec<ResourceType> = match rt {
        Some(t) => vec![t],
        None => ResourceType::ALL.to_vec(),
    };
    let mut last = String::new();
    for t in candidates {
        match schema::resolve_attr(t, path) {
            Ok(r) => return Ok((t, r)),
            Err(e) => last = e,
        }
    }
    Err(invalid(last))
}

fn collection(path: &str, rt: Option<ResourceType>) -> Result<(Collection, &'static Attribute)> {
    let (t, r) = for_type(path, rt)?;
    if r.sub.is_some() || !r.attr.multi {
        return Err(invalid(format!(
            "`{path}[…]` needs a multi-valued attribute"
        )));
    }
    Ok((collection_of(t, &r), r.attr))
}

fn collection_of(t: ResourceType, r: &schema::Resolved) -> Collection {
    match (t, r.attr.name) {
        (ResourceType::Group, "members") => Collection::Members,
        (ResourceType::User, "groups") => Collection::Groups,
        _ => Collection::Doc(doc_path(r, false)),
    }
}

fn doc_path(r: &schema::Resolved, with_sub: bool) -> Vec<&'static str> {
    let mut p = Vec::new();
    if let Some(e) = r.extension {
        p.push(e.id);
    }
    p.push(r.attr.name);
    if with_sub && let Some(s) = r.sub {
        p.push(s.name);
    }
    p
}

fn compare(path: &str, op: Op, lit: &Literal, rt: Option<ResourceType>) -> Result<Cond> {
    let (t, r) = for_type(path, rt)?;
    if rt.is_none() && !r.is_common() {
        return Err(invalid(format!(
            "a search over every resource type filters only on id, externalId and meta; `{path}` is not one of them"
        )));
    }
    if r.attr.multi {
        // `emails.value eq "x"`, `emails eq "x"` (the `value` sub-attribute), `emails pr`.
        let over = collection_of(t, &r);
        let sub = match r.sub {
            Some(s) => Some(s),
            None if op == Op::Pr => None,
            None => Some(schema::sub_attribute(r.attr, "value").ok_or_else(|| {
                invalid(format!(
                    "`{path}` has no `value`: compare one of its sub-attributes"
                ))
            })?),
        };
        let cond = match sub {
            Some(s) => elem_test(r.attr, s, op, lit, path)?,
            None => Cond::Test {
                field: Field::Elem(None),
                op: Op::Pr,
                value: Operand::None,
                case_exact: false,
            },
        };
        return Ok(Cond::Any {
            over,
            cond: Box::new(cond),
        });
    }
    let leaf = r.leaf();
    let column = match (r.extension.is_some(), r.attr.name, r.sub.map(|s| s.name)) {
        (false, "id", None) => Some(Column::Id),
        (false, "externalId", None) => Some(Column::ExternalId),
        (false, "userName", None) => Some(Column::UserName),
        (false, "displayName", None) if t == ResourceType::Group => Some(Column::DisplayName),
        (false, "active", None) => Some(Column::Active),
        (false, "meta", Some("created")) => Some(Column::Created),
        (false, "meta", Some("lastModified")) => Some(Column::LastModified),
        (false, "meta", Some("resourceType")) => Some(Column::ResourceType),
        (false, "meta", _) => {
            return Err(invalid(format!(
                "`{path}` cannot be filtered on: use meta.created, meta.lastModified or meta.resourceType"
            )));
        }
        _ => None,
    };
    let field = match column {
        Some(c) => Field::Column(c),
        None => Field::Doc(doc_path(&r, true)),
    };
    if leaf.ty == AttrType::Complex && op != Op::Pr {
        return Err(invalid(format!(
            "`{path}` is complex: compare one of its sub-attributes"
        )));
    }
    test(field, leaf, op, lit, path)
}

fn elem_test(
    attr: &'static Attribute,
    sub: &'static Attribute,
    op: Op,
    lit: &Literal,
    path: &str,
) -> Result<Cond> {
    if matches!(attr.name, "members" | "groups") && sub.name != "value" {
        return Err(invalid(format!(
            "`{path}`: only the `value` of {} can be filtered on",
            attr.name
        )));
    }
    test(Field::Elem(Some(sub.name)), sub, op, lit, path)
}

fn resolve_elem(f: &Filter, attr: &'static Attribute, outer: &str) -> Result<Cond> {
    Ok(match f {
        Filter::And(a, b) => Cond::And(
            Box::new(resolve_elem(a, attr, outer)?),
            Box::new(resolve_elem(b, attr, outer)?),
        ),
        Filter::Or(a, b) => Cond::Or(
            Box::new(resolve_elem(a, attr, outer)?),
            Box::new(resolve_elem(b, attr, outer)?),
        ),
        Filter::Not(a) => Cond::Not(Box::new(resolve_elem(a, attr, outer)?)),
        Filter::ValuePath(p, _) => {
            return Err(invalid(format!(
                "`{outer}[{p}[…]]`: value paths do not nest"
            )));
        }
        Filter::Compare(p, op, lit) => {
            // The sub-attribute may be written plainly or fully qualified.
            let name = p.rsplit_once('.').map_or(p.as_str(), |(_, n)| n);
            let name = name.rsplit_once(':').map_or(name, |(_, n)| n);
            let sub = schema::sub_attribute(attr, name).ok_or_else(|| {
                invalid(format!("`{p}` is not a sub-attribute of `{}`", attr.name))
            })?;
            elem_test(attr, sub, *op, lit, p)?
        }
    })
}

/// Resolves a value-path filter (`type eq "work"` of `emails[type eq "work"]`) for use in
/// memory on the elements of `attr`.
pub fn resolve_value_filter(f: &Filter, attr: &'static Attribute) -> Result<Cond> {
    resolve_elem(f, attr, attr.name)
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Evaluates an element condition (fields [`Field::Elem`]) on one element in memory, as
/// the store would: text case-insensitively unless case-exact; an absent value fails
/// every test but `ne`.
pub fn matches_elem(c: &Cond, elem: &Value) -> bool {
    match c {
        Cond::And(a, b) => matches_elem(a, elem) && matches_elem(b, elem),
        Cond::Or(a, b) => matches_elem(a, elem) || matches_elem(b, elem),
        Cond::Not(a) => !matches_elem(a, elem),
        Cond::Any { .. } => false,
        Cond::Test {
            field,
            op,
            value,
            case_exact,
        } => {
            let v = match field {
                Field::Elem(Some(sub)) => elem
                    .as_object()
                    .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(sub)))
                    .map(|(_, v)| v),
                Field::Elem(None) => Some(elem),
                _ => None,
            }
            .filter(|v| !v.is_null());
            compare_value(v, *op, value, *case_exact)
        }
    }
}

fn compare_value(v: Option<&Value>, op: Op, operand: &Operand, case_exact: bool) -> bool {
    let Some(v) = v else {
        return op == Op::Ne;
    };
    if op == Op::Pr {
        return match v {
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => true,
        };
    }
    let ord = match operand {
        Operand::Bool(b) => match v {
            Value::Bool(x) => x.cmp(b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => true.cmp(b),
            Value::String(s) if s.eq_ignore_ascii_case("false") => false.cmp(b),
            _ => return op == Op::Ne,
        },
        Operand::Time(t) => match v
            .as_str()
            .and_then(|s| crate::schedule::parse_datetime(s).ok())
        {
            Some(x) => x.cmp(t),
            None => return op == Op::Ne,
        },
        Operand::Text(t) => {
            let Some(x) = text_of(v) else {
                return op == Op::Ne;
            };
            let (x, t) = if case_exact {
                (x, t.clone())
            } else {
                (x.to_lowercase(), t.to_lowercase())
            };
            match op {
                Op::Co => return x.contains(&t),
                Op::Sw => return x.starts_with(&t),
                Op::Ew => return x.ends_with(&t),
                _ => x.cmp(&t),
            }
        }
        Operand::None => return false,
    };
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => ord == Equal,
        Op::Ne => ord != Equal,
        Op::Gt => ord == Greater,
        Op::Ge => ord != Less,
        Op::Lt => ord == Less,
        Op::Le => ord != Greater,
        Op::Co | Op::Sw | Op::Ew | Op::Pr => false,
    }
}

/// The `attr eq "value"` assignments a value filter implies (`type eq "work"` → `type` =
/// `work`), used to create the element an `add` to `emails[type eq "work"].value` names
/// when none matches (what Entra ID sends).
pub fn implied_values(c: &Cond) -> Option<Vec<(&'static str, Value)>> {
    match c {
        Cond::Test {
            field: Field::Elem(Some(sub)),
            op: Op::Eq,
            value,
            ..
        } => {
            let v = match value {
                Operand::Text(t) => Value::String(t.clone()),
                Operand::Bool(b) => Value::Bool(*b),
                Operand::Time(t) => Value::String(t.to_string()),
                Operand::None => return None,
            };
            Some(vec![(*sub, v)])
        }
        Cond::And(a, b) => {
            let mut v = implied_values(a)?;
            v.extend(implied_values(b)?);
            Some(v)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Filter {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn cmp(a: &str, op: Op, v: Literal) -> Filter {
        Filter::Compare(a.into(), op, v)
    }

    #[test]
    fn parses_the_rfc_examples() {
        assert_eq!(
            p(r#"userName Eq "john""#),
            cmp("userName", Op::Eq, Literal::String("john".into()))
        );
        assert_eq!(p("title pr"), cmp("title", Op::Pr, Literal::Null));
        assert_eq!(
            p(r#"title pr and userType eq "Employee""#),
            Filter::And(
                Box::new(cmp("title", Op::Pr, Literal::Null)),
                Box::new(cmp("userType", Op::Eq, Literal::String("Employee".into())))
            )
        );
        // `and` binds tighter than `or`.
        let f = p(r#"a eq "1" or b eq "2" and c eq "3""#);
        assert!(matches!(f, Filter::Or(_, ref r) if matches!(**r, Filter::And(_, _))));
        let f = p(r#"(a eq "1" or b eq "2") and c eq "3""#);
        assert!(matches!(f, Filter::And(ref l, _) if matches!(**l, Filter::Or(_, _))));
        let f = p(r#"userType eq "Employee" and not (emails.value co "example.org")"#);
        assert!(matches!(f, Filter::And(_, ref r) if matches!(**r, Filter::Not(_))));
        let f = p(r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp"]"#);
        assert!(
            matches!(f, Filter::Or(ref l, _) if matches!(**l, Filter::ValuePath(ref a, _) if a == "emails"))
        );
        let f = p(r#"emails[type eq "work"].value eq "a@b.c""#);
        assert!(
            matches!(f, Filter::ValuePath(ref a, ref i) if a == "emails" && matches!(**i, Filter::And(_, _)))
        );
        assert_eq!(
            p(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#),
            cmp(
                "meta.lastModified",
                Op::Gt,
                Literal::String("2011-05-13T04:42:34Z".into())
            )
        );
        assert_eq!(
            p(r#"displayName eq "say \"hi\"""#),
            cmp("displayName", Op::Eq, Literal::String("say \"hi\"".into()))
        );
        assert_eq!(
            p("active eq TRUE"),
            cmp("active", Op::Eq, Literal::Bool(true))
        );
    }

    #[test]
    fn rejects_malformed_filters() {
        for bad in [
            "",
            "userName",
            "userName eq",
            r#"userName xx "a""#,
            r#"userName eq "a" and"#,
            r#"(userName eq "a""#,
            r#"userName eq "a")"#,
            r#"emails[type eq "work""#,
            r#"userName eq unquoted"#,
            r#"userName eq "open"#,
            r#"and eq "a""#,
            &format!("{}a pr{}", "(".repeat(40), ")".repeat(40)),
            &vec!["a pr"; 70].join(" and "),
        ] {
            let e = parse(bad).err().unwrap_or_else(|| panic!("`{bad}` parsed"));
            assert_eq!(
                e.code,
                crate::error::ErrorCode::Scim(ScimType::InvalidFilter),
                "{bad}"
            );
        }
    }

    #[test]
    fn resolves_against_the_schema() {
        let r = |s: &str, t: ResourceType| resolve(&p(s), Some(t));
        assert!(matches!(
            r(r#"USERNAME eq "x""#, ResourceType::User).unwrap(),
            Cond::Test {
                field: Field::Column(Column::UserName),
                ..
            }
        ));
        assert!(matches!(
            r(r#"name.givenName sw "J""#, ResourceType::User).unwrap(),
            Cond::Test { field: Field::Doc(ref p), .. } if p == &vec!["name", "givenName"]
        ));
        assert!(matches!(
            r(r#"emails eq "x""#, ResourceType::User).unwrap(),
            Cond::Any {
                over: Collection::Doc(_),
                ..
            }
        ));
        assert!(matches!(
            r(r#"members[value eq "x"]"#, ResourceType::Group).unwrap(),
            Cond::Any {
                over: Collection::Members,
                ..
            }
        ));
        assert!(matches!(
            r(r#"members eq "x""#, ResourceType::Group).unwrap(),
            Cond::Any {
                over: Collection::Members,
                ..
            }
        ));
        assert!(matches!(
            r(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "x""#, ResourceType::User).unwrap(),
            Cond::Test { field: Field::Doc(ref p), .. } if p.len() == 2
        ));
        for bad in [
            r#"nope eq "x""#,
            r#"active eq "maybe""#,
            r#"active gt true"#,
            r#"meta.created co "2020""#,
            r#"meta.created eq "yesterday""#,
            r#"name eq "x""#,
            r#"userName eq true"#,
            r#"title[value eq "x"]"#,
            r#"emails[nope eq "x"]"#,
        ] {
            let e = r(bad, ResourceType::User)
                .err()
                .unwrap_or_else(|| panic!("`{bad}` resolved"));
            assert_eq!(
                e.code,
                crate::error::ErrorCode::Scim(ScimType::InvalidFilter),
                "{bad}"
            );
        }
        assert!(r(r#"userName eq "x""#, ResourceType::Group).is_err());
        assert!(resolve(&p(r#"userName eq "x""#), None).is_err());
        assert!(resolve(&p(r#"externalId eq "x""#), None).is_ok());
    }

    #[test]
    fn value_filters_evaluate_in_memory() {
        let emails = schema::resolve_attr(ResourceType::User, "emails")
            .unwrap()
            .attr;
        let c =
            resolve_value_filter(&p(r#"type eq "WORK" and value ew "@x.org""#), emails).unwrap();
        assert!(matches_elem(
            &c,
            &json!({"type": "work", "value": "A@X.ORG"})
        ));
        assert!(!matches_elem(
            &c,
            &json!({"type": "home", "value": "a@x.org"})
        ));
        let c = resolve_value_filter(&p("primary eq true"), emails).unwrap();
        assert!(matches_elem(&c, &json!({"primary": true})));
        assert!(!matches_elem(&c, &json!({})));
        let c = resolve_value_filter(&p(r#"not (type eq "work")"#), emails).unwrap();
        assert!(matches_elem(&c, &json!({"value": "x"})));
        let c = resolve_value_filter(&p(r#"type eq "work""#), emails).unwrap();
        assert_eq!(implied_values(&c), Some(vec![("type", json!("work"))]));
    }
}
