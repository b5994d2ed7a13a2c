//! The OData v4 query options of the Microsoft Graph beta API (`$filter`, `$orderby`,
//! `$select`, `$expand`, `$top`, `$skip`, `$count`), parsed into an AST by one parser shared
//! by every collection, and the per-collection field whitelist that validates them.
//!
//! Error positions in `$filter` messages are 0-based character offsets into the option value.

use std::fmt;

use jiff::Timestamp;

use crate::error::DomainError;

/// The instants (Unix seconds) whose UTC form has a four-digit year, 0000 to 9999: what a
/// date-time literal may denote, so that it prints back as one.
const UTC_FOUR_DIGIT_YEARS: std::ops::Range<i64> = -62_167_219_200..253_402_300_800;

type Result<T, E = DomainError> = std::result::Result<T, E>;

/// Longest accepted value of one query option, in bytes.
pub const MAX_INPUT_LEN: usize = 8 * 1024;
/// Deepest accepted nesting of parentheses, `not` and function calls in a `$filter`.
pub const MAX_DEPTH: usize = 64;
/// Most AST nodes (expressions, operands and `in` values) accepted in one `$filter`.
pub const MAX_NODES: usize = 2000;
/// Largest accepted `$top`.
pub const MAX_TOP: u32 = 999;
/// Deepest accepted nesting of `$expand` options inside `$expand` items.
pub const MAX_EXPAND_DEPTH: usize = 8;

/// The parsed query options of one request (nested in `$expand` items too).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryOptions {
    /// `$filter`.
    pub filter: Option<Filter>,
    /// `$orderby`, in order of significance.
    pub orderby: Vec<OrderBy>,
    /// `$select`: property names as given (match case-insensitively); may hold `*`.
    pub select: Option<Vec<String>>,
    /// `$expand` items.
    pub expand: Vec<Expand>,
    /// `$top`, at most [`MAX_TOP`].
    pub top: Option<u32>,
    /// `$skip`.
    pub skip: Option<u32>,
    /// `$count=true`.
    pub count: bool,
    /// `$filter=asApprover()` (the whole filter, at the top level only): the requests the
    /// caller may decide, as in the ARM API (a Rolegate extension to the Graph API).
    pub as_approver: bool,
}

/// One `$orderby` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    /// The property path, one segment per `/`-separated part.
    pub path: Vec<String>,
    /// `desc` was given.
    pub descending: bool,
}

/// One `$expand` item with its nested options.
#[derive(Debug, Clone, PartialEq)]
pub struct Expand {
    /// The navigation property as given (`a` or `a/b`), or `*`.
    pub path: String,
    /// The options inside the parentheses (default when none).
    pub options: QueryOptions,
}

/// A boolean `$filter` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `a and b`.
    And(Box<Filter>, Box<Filter>),
    /// `a or b`.
    Or(Box<Filter>, Box<Filter>),
    /// `not a`.
    Not(Box<Filter>),
    /// `left op right`.
    Compare {
        /// Left side.
        left: Operand,
        /// Operator.
        op: CompareOp,
        /// Right side.
        right: Operand,
    },
    /// `operand in (v1, v2, …)` with at least one value.
    In {
        /// Tested value.
        operand: Operand,
        /// Accepted values.
        values: Vec<Literal>,
    },
    /// `contains(target, arg)`, `startswith(…)` or `endswith(…)`.
    Function {
        /// Which function.
        func: StringFunction,
        /// The string searched in.
        target: Operand,
        /// The string searched for.
        arg: Operand,
    },
    /// `collection/any(v: v/property eq value)`: some member of a collection property has
    /// `property` equal to `value`. The only lambda form supported (no `all`, no other
    /// operator or nesting inside the lambda).
    Any {
        /// The collection property's path, e.g. `targetResources`.
        collection: Vec<String>,
        /// The range variable, e.g. `t`.
        variable: String,
        /// The member property's path below the variable, e.g. `id`.
        property: Vec<String>,
        /// The value compared with.
        value: Literal,
    },
}

/// A value inside a comparison or a function call.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A property path `a/b/c`.
    Property(Vec<String>),
    /// A literal.
    Literal(Literal),
    /// `tolower(x)`.
    ToLower(Box<Operand>),
    /// `toupper(x)`.
    ToUpper(Box<Operand>),
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `'text'` (also unquoted GUIDs).
    String(String),
    /// An integer.
    Int(i64),
    /// A decimal number.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A DateTimeOffset such as `2024-05-01T10:00:00Z`.
    DateTime(Timestamp),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `eq`.
    Eq,
    /// `ne`.
    Ne,
    /// `gt`.
    Gt,
    /// `ge`.
    Ge,
    /// `lt`.
    Lt,
    /// `le`.
    Le,
}

/// A boolean string function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringFunction {
    /// `contains(target, arg)`.
    Contains,
    /// `startswith(target, arg)`.
    StartsWith,
    /// `endswith(target, arg)`.
    EndsWith,
}

impl CompareOp {
    const ALL: [(&'static str, CompareOp); 6] = [
        ("eq", Self::Eq),
        ("ne", Self::Ne),
        ("gt", Self::Gt),
        ("ge", Self::Ge),
        ("lt", Self::Lt),
        ("le", Self::Le),
    ];

    /// The OData spelling (`eq`, `ne`, …).
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, op)| *op == self)
            .map_or("eq", |(s, _)| s)
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(name))
            .map(|(_, op)| *op)
    }
}

impl StringFunction {
    /// The OData spelling (`contains`, `startswith`, `endswith`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Contains => "contains",
            Self::StartsWith => "startswith",
            Self::EndsWith => "endswith",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Self::Contains, Self::StartsWith, Self::EndsWith]
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(name))
    }
}

// ---------------------------------------------------------------------------------------------
// Query options

/// A 400 BadRequest with a formatted message.
macro_rules! bad {
    ($($arg:tt)*) => { DomainError::bad_request(format!($($arg)*)) };
}

const OPTIONS: [&str; 7] = [
    "filter", "orderby", "select", "expand", "top", "skip", "count",
];

/// Parses the percent-decoded name/value pairs of a URL query string.
pub fn parse_query(pairs: &[(String, String)]) -> Result<QueryOptions> {
    parse_options(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), 0)
}

/// `depth` 0 is the URL; deeper levels are `$expand` options, where unknown names are errors.
fn parse_options<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    depth: usize,
) -> Result<QueryOptions> {
    let (mut q, mut seen) = (QueryOptions::default(), Vec::new());
    for (raw, value) in pairs {
        let name = raw.strip_prefix('$').unwrap_or(raw);
        let Some(&name) = OPTIONS.iter().find(|n| n.eq_ignore_ascii_case(name)) else {
            if raw.starts_with('$') || depth > 0 {
                return Err(bad!("unsupported query option `{raw}`"));
            }
            continue;
        };
        if seen.contains(&name) {
            return Err(bad!("query option `${name}` is given more than once"));
        }
        seen.push(name);
        if value.len() > MAX_INPUT_LEN {
            return Err(bad!("${name} is longer than {MAX_INPUT_LEN} bytes"));
        }
        let int = |max: u32| {
            let expected = format!("expected an integer from 0 to {max}");
            let n = value.parse().ok().filter(|n| *n <= max);
            n.ok_or_else(|| bad!("invalid ${name} `{value}`: {expected}"))
        };
        match name {
            "filter" if depth == 0 && value.trim().eq_ignore_ascii_case("asApprover()") => {
                q.as_approver = true;
            }
            "filter" => q.filter = Some(parse_filter(value)?),
            "orderby" => q.orderby = parse_orderby(value)?,
            "select" => q.select = Some(parse_select(value)?),
            "expand" => q.expand = parse_expand(value, depth)?,
            "top" => q.top = Some(int(MAX_TOP)?),
            "skip" => q.skip = Some(int(u32::MAX)?),
            _ => {
                let expected = "expected `true` or `false`";
                q.count = value
                    .parse()
                    .map_err(|_| bad!("invalid $count `{value}`: {expected}"))?;
            }
        }
    }
    Ok(q)
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_path(s: &str, option: &str) -> Result<Vec<String>> {
    match s.split('/').all(is_ident) {
        true => Ok(s.split('/').map(String::from).collect()),
        false => Err(bad!("invalid property `{s}` in {option}")),
    }
}

fn parse_orderby(value: &str) -> Result<Vec<OrderBy>> {
    let item = |item: &str| {
        let (path, descending) = match item.split_whitespace().collect::<Vec<_>>()[..] {
            [path] => (path, false),
            [path, dir] if dir.eq_ignore_ascii_case("asc") => (path, false),
            [path, dir] if dir.eq_ignore_ascii_case("desc") => (path, true),
            _ => return Err(bad!("invalid $orderby item `{}`", item.trim())),
        };
        Ok(OrderBy {
            path: parse_path(path, "$orderby")?,
            descending,
        })
    };
    value.split(',').map(item).collect()
}

fn parse_select(value: &str) -> Result<Vec<String>> {
    let item = |s: &str| match s.trim() {
        s if s == "*" || is_ident(s) => Ok(s.to_owned()),
        s => Err(bad!("invalid property `{s}` in $select")),
    };
    value.split(',').map(item).collect()
}

fn parse_expand(value: &str, depth: usize) -> Result<Vec<Expand>> {
    if depth >= MAX_EXPAND_DEPTH {
        return Err(bad!(
            "$expand is nested deeper than {MAX_EXPAND_DEPTH} levels"
        ));
    }
    let mut items = Vec::new();
    for item in split_top_level(value, ',', "$expand")? {
        let item = item.trim();
        let (path, inner) = match item.split_once('(') {
            None => (item, ""),
            Some((path, rest)) => match rest.strip_suffix(')') {
                Some(inner) => (path.trim(), inner),
                None => {
                    return Err(bad!(
                        "invalid $expand item `{item}`: expected `)` at the end"
                    ));
                }
            },
        };
        if path != "*" {
            parse_path(path, "$expand")?;
        }
        let mut pairs = Vec::new();
        if item.contains('(') {
            for opt in split_top_level(inner, ';', "$expand")? {
                let expected = "expected `name=value`";
                let (name, v) = opt.split_once('=').ok_or_else(|| {
                    bad!(
                        "invalid option `{}` in $expand item `{path}`: {expected}",
                        opt.trim()
                    )
                })?;
                pairs.push((name.trim(), v));
            }
        }
        let options = parse_options(pairs, depth + 1)?;
        items.push(Expand {
            path: path.to_owned(),
            options,
        });
    }
    Ok(items)
}

/// Splits on `sep` outside parentheses and single-quoted strings; no part may be empty.
fn split_top_level<'a>(s: &'a str, sep: char, option: &str) -> Result<Vec<&'a str>> {
    let (mut parts, mut depth, mut quoted, mut start) = (Vec::new(), 0usize, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                let unbalanced = || bad!("unbalanced `)` in {option} `{s}`");
                depth = depth.checked_sub(1).ok_or_else(unbalanced)?;
            }
            c if c == sep && !quoted && depth == 0 => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    if depth != 0 || quoted {
        Err(bad!("unbalanced parentheses or quotes in {option} `{s}`"))
    } else if parts.iter().any(|p| p.trim().is_empty()) {
        Err(bad!("empty item in {option} `{s}`"))
    } else {
        Ok(parts)
    }
}

// ---------------------------------------------------------------------------------------------
// $filter lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    Slash,
    /// `:` after a lambda's range variable.
    Colon,
    Ident(String),
    Lit(Literal),
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// 0-based character offset.
    pos: usize,
    /// The source text, for messages.
    text: String,
}

fn syntax(pos: usize, what: impl fmt::Display) -> DomainError {
    bad!("invalid $filter at position {pos}: {what}")
}

fn is_ident_char(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
}

/// Whether an unquoted GUID (8-4-4-4-12 hex digits) starts at `start`.
fn is_guid_at(chars: &[char], start: usize) -> bool {
    let hex = |k: usize| chars.get(k).is_some_and(char::is_ascii_hexdigit);
    let dash = |k: usize| chars.get(k) == Some(&'-');
    let end = start + 36;
    (start..end).all(|k| {
        if [8, 13, 18, 23].contains(&(k - start)) {
            dash(k)
        } else {
            hex(k)
        }
    }) && !is_ident_char(chars.get(end))
        && !dash(end)
}

fn lex(input: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = input.chars().collect();
    let digit = |k: usize| chars.get(k).is_some_and(char::is_ascii_digit);
    let skip_digits = |mut k: usize| {
        while digit(k) {
            k += 1;
        }
        k
    };
    let (mut toks, mut i) = (Vec::new(), 0);
    while let Some(&c) = chars.get(i) {
        let start = i;
        i += 1;
        let tok = match c {
            c if c.is_whitespace() => continue,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            '/' => Tok::Slash,
            ':' => Tok::Colon,
            '\'' => {
                let mut s = String::new();
                loop {
                    match (chars.get(i), chars.get(i + 1)) {
                        (None, _) => return Err(syntax(start, "unterminated string literal")),
                        (Some('\''), Some('\'')) => i += 1,
                        (Some('\''), _) => break,
                        _ => {}
                    }
                    s.extend(chars.get(i));
                    i += 1;
                }
                i += 1;
                Tok::Lit(Literal::String(s))
            }
            _ if is_guid_at(&chars, start) => {
                i = start + 36;
                Tok::Lit(Literal::String(chars[start..i].iter().collect()))
            }
            // A date-time: 4 digits and a `-`; its `-`, `+`, `:` and `.` belong to it.
            _ if (start..start + 4).all(digit) && chars.get(start + 4) == Some(&'-') => {
                let part = |c: &char| c.is_ascii_alphanumeric() || "-:.+".contains(*c);
                while chars.get(i).is_some_and(part) {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let invalid = |_| syntax(start, format!("invalid date-time literal `{text}`"));
                let at: Timestamp = text.parse().map_err(invalid)?;
                // In UTC, as it is printed back, the year must still have four digits:
                // `0000-01-01T00:00:05+02:00` is a moment of year -1.
                if !UTC_FOUR_DIGIT_YEARS.contains(&at.as_second()) {
                    return Err(syntax(
                        start,
                        format!(
                            "date-time literal `{text}` lies outside the years 0000 to 9999 in UTC"
                        ),
                    ));
                }
                Tok::Lit(Literal::DateTime(at))
            }
            c if c.is_ascii_digit() || (c == '-' && digit(i)) => {
                i = skip_digits(i);
                let fraction = chars.get(i) == Some(&'.') && digit(i + 1);
                if fraction {
                    i = skip_digits(i + 1);
                }
                let sign = usize::from(matches!(chars.get(i + 1), Some('+' | '-')));
                let exponent = matches!(chars.get(i), Some('e' | 'E')) && digit(i + 1 + sign);
                if exponent {
                    i = skip_digits(i + 1 + sign);
                }
                let trailing = is_ident_char(chars.get(i));
                while is_ident_char(chars.get(i)) {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let invalid = || syntax(start, format!("invalid number `{text}`"));
                let value = match fraction || exponent {
                    _ if trailing => None,
                    true => text
                        .parse()
                        .ok()
                        .filter(|f: &f64| f.is_finite())
                        .map(Literal::Float),
                    false => text.parse().ok().map(Literal::Int),
                };
                Tok::Lit(value.ok_or_else(invalid)?)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                while is_ident_char(chars.get(i)) {
                    i += 1;
                }
                Tok::Ident(chars[start..i].iter().collect())
            }
            c => return Err(syntax(start, format!("unexpected character `{c}`"))),
        };
        let text = chars[start..i].iter().collect();
        toks.push(Token {
            tok,
            pos: start,
            text,
        });
    }
    let (pos, text) = (chars.len(), String::new());
    toks.push(Token {
        tok: Tok::Eof,
        pos,
        text,
    });
    Ok(toks)
}

// ---------------------------------------------------------------------------------------------
// $filter parser

const RESERVED: [&str; 10] = ["and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le", "in"];

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// Parses a `$filter` expression.
pub fn parse_filter(input: &str) -> Result<Filter> {
    if input.len() > MAX_INPUT_LEN {
        return Err(bad!("$filter is longer than {MAX_INPUT_LEN} bytes"));
    }
    let (toks, i, nesting, nodes) = (lex(input)?, 0, 0, 0);
    let mut p = Parser {
        toks,
        i,
        nesting,
        nodes,
    };
    let filter = p.or_expr()?;
    match p.peek() {
        Token { tok: Tok::Eof, .. } => Ok(filter),
        t => Err(syntax(
            t.pos,
            format!("unexpected `{}` after a complete expression", t.text),
        )),
    }
}

struct Parser {
    /// Never empty: ends with [`Tok::Eof`].
    toks: Vec<Token>,
    i: usize,
    nesting: usize,
    nodes: usize,
}

impl Parser {
    fn peek_at(&self, ahead: usize) -> &Token {
        let last = self.toks.len().saturating_sub(1);
        &self.toks[(self.i + ahead).min(last)]
    }

    fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    fn bump(&mut self) -> Token {
        let tok = self.peek().clone();
        self.i += 1;
        tok
    }

    fn keyword(&self) -> Option<&str> {
        match &self.peek().tok {
            Tok::Ident(name) => Some(name),
            _ => None,
        }
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        let found = self.keyword().is_some_and(|k| k.eq_ignore_ascii_case(kw));
        self.i += usize::from(found);
        found
    }

    fn expect_token(&mut self, tok: Tok, what: &str, after: &str) -> Result<()> {
        let t = self.bump();
        match t.tok == tok {
            true => Ok(()),
            false => Err(syntax(t.pos, format!("expected {what} after {after}"))),
        }
    }

    /// Counts one more AST node against [`MAX_NODES`].
    fn node(&mut self) -> Result<()> {
        self.nodes += 1;
        match self.nodes > MAX_NODES {
            true => Err(syntax(
                self.peek().pos,
                format!("more than {MAX_NODES} nodes"),
            )),
            false => Ok(()),
        }
    }

    /// Runs `f` one nesting level deeper, refusing to go past [`MAX_DEPTH`].
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.nesting >= MAX_DEPTH {
            let what = format!("nested deeper than {MAX_DEPTH} levels");
            return Err(syntax(self.peek().pos, what));
        }
        self.nesting += 1;
        let result = f(self);
        self.nesting -= 1;
        result
    }

    fn or_expr(&mut self) -> Result<Filter> {
        let mut left = self.and_expr()?;
        while self.eat_keyword("or") {
            let right = self.and_expr()?;
            self.node()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Filter> {
        let mut left = self.not_expr()?;
        while self.eat_keyword("and") {
            let right = self.not_expr()?;
            self.node()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<Filter> {
        if !self.eat_keyword("not") {
            return self.comparison();
        }
        let inner = self.nested(Self::not_expr)?;
        self.node()?;
        Ok(Filter::Not(Box::new(inner)))
    }

    fn comparison(&mut self) -> Result<Filter> {
        if self.peek().tok == Tok::LParen {
            self.i += 1;
            let inner = self.nested(Self::or_expr)?;
            self.expect_token(Tok::RParen, "`)`", "the parenthesised expression")?;
            return Ok(inner);
        }
        let func = self.keyword().and_then(StringFunction::from_name);
        if let Some(func) = func.filter(|_| self.peek_at(1).tok == Tok::LParen) {
            let name = self.bump().text;
            self.i += 1;
            let (target, arg) = self.nested(|p| {
                let target = p.operand(&format!("after `{name}(`"))?;
                p.expect_token(Tok::Comma, "`,`", &format!("`{target}`"))?;
                Ok((target, p.operand("after `,`")?))
            })?;
            self.expect_token(Tok::RParen, "`)`", &format!("`{arg}`"))?;
            self.node()?;
            return self.bool_suffix(Filter::Function { func, target, arg });
        }
        let left = self.operand("at the start of the expression")?;
        let tok = self.peek().clone();
        if let (Operand::Property(path), Tok::LParen) = (&left, &tok.tok)
            && let Some((last, collection)) = path.split_last()
            && !collection.is_empty()
        {
            if last.eq_ignore_ascii_case("any") {
                let collection = collection.to_vec();
                return self.nested(|p| p.lambda(collection));
            }
            if last.eq_ignore_ascii_case("all") {
                return Err(syntax(tok.pos, "only `any` lambdas are supported"));
            }
        }
        if let Some(op) = self.keyword().and_then(CompareOp::from_name) {
            self.i += 1;
            let right = self.operand(&format!("after `{}`", tok.text))?;
            self.node()?;
            return Ok(Filter::Compare { left, op, right });
        }
        if !self.eat_keyword("in") {
            let what = format!("expected a comparison operator or `in` after `{left}`");
            return Err(syntax(tok.pos, what));
        }
        self.expect_token(Tok::LParen, "`(`", "`in`")?;
        let mut values = Vec::new();
        loop {
            let tok = self.bump();
            let value = literal(&tok);
            values
                .push(value.ok_or_else(|| syntax(tok.pos, "expected a literal in the `in` list"))?);
            self.node()?;
            if self.peek().tok != Tok::Comma {
                break;
            }
            self.i += 1;
        }
        self.expect_token(Tok::RParen, "`)`", "the `in` list")?;
        Ok(Filter::In {
            operand: left,
            values,
        })
    }

    /// The rest of `collection/any(v: v/property eq 'value')`, from the `(`.
    fn lambda(&mut self, collection: Vec<String>) -> Result<Filter> {
        self.expect_token(Tok::LParen, "`(`", "`any`")?;
        let var = self.bump();
        let variable = match var.tok {
            Tok::Ident(v) if !is_reserved(&v) => v,
            _ => return Err(syntax(var.pos, "expected a range variable after `any(`")),
        };
        self.expect_token(Tok::Colon, "`:`", &format!("`any({variable}`"))?;
        let at = self.peek().pos;
        let expected = || {
            syntax(
                at,
                format!("expected `{variable}/property eq value` in `any`"),
            )
        };
        let property = match self.operand(&format!("after `{variable}:`"))? {
            Operand::Property(path) if path.len() > 1 && path[0] == variable => path[1..].to_vec(),
            _ => return Err(expected()),
        };
        if !self.eat_keyword("eq") {
            let pos = self.peek().pos;
            return Err(syntax(pos, "only `eq` is supported inside `any`"));
        }
        let tok = self.bump();
        let value =
            literal(&tok).ok_or_else(|| syntax(tok.pos, "expected a literal after `eq`"))?;
        self.expect_token(Tok::RParen, "`)`", "the `any` expression")?;
        self.node()?;
        Ok(Filter::Any {
            collection,
            variable,
            property,
            value,
        })
    }

    /// Accepts `contains(…) eq true` and the like by folding the comparison away.
    fn bool_suffix(&mut self, filter: Filter) -> Result<Filter> {
        let op = self.keyword().and_then(CompareOp::from_name);
        let (Some(op @ (CompareOp::Eq | CompareOp::Ne)), Some(Literal::Bool(value))) =
            (op, literal(self.peek_at(1)))
        else {
            return Ok(filter);
        };
        self.i += 2;
        if (op == CompareOp::Eq) == value {
            return Ok(filter);
        }
        self.node()?;
        Ok(Filter::Not(Box::new(filter)))
    }

    /// A literal, a property path or `tolower(…)`/`toupper(…)`; `after` says where, for errors.
    fn operand(&mut self, after: &str) -> Result<Operand> {
        self.node()?;
        let tok = self.bump();
        if let Some(value) = literal(&tok) {
            return Ok(Operand::Literal(value));
        }
        let name = match &tok.tok {
            Tok::Ident(name) if !is_reserved(name) => name,
            _ => return Err(syntax(tok.pos, format!("expected a value {after}"))),
        };
        if self.peek().tok == Tok::LParen {
            let wrap = match name.to_ascii_lowercase().as_str() {
                "tolower" => Operand::ToLower,
                "toupper" => Operand::ToUpper,
                _ => {
                    return Err(syntax(
                        tok.pos,
                        format!("unsupported function `{name}` here"),
                    ));
                }
            };
            self.i += 1;
            let inner = self.nested(|p| p.operand(&format!("after `{name}(`")))?;
            self.expect_token(Tok::RParen, "`)`", &format!("`{inner}`"))?;
            return Ok(wrap(Box::new(inner)));
        }
        let mut path = vec![name.clone()];
        while self.peek().tok == Tok::Slash {
            self.i += 1;
            match self.bump() {
                Token {
                    tok: Tok::Ident(seg),
                    ..
                } if !is_reserved(&seg) => path.push(seg),
                t => return Err(syntax(t.pos, "expected a property name after `/`")),
            }
        }
        Ok(Operand::Property(path))
    }
}

fn literal(tok: &Token) -> Option<Literal> {
    match &tok.tok {
        Tok::Lit(value) => Some(value.clone()),
        Tok::Ident(word) => match word.to_ascii_lowercase().as_str() {
            "true" => Some(Literal::Bool(true)),
            "false" => Some(Literal::Bool(false)),
            "null" => Some(Literal::Null),
            _ => None,
        },
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Canonical printing

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let precedence = |filter: &Filter| match filter {
            Filter::Or(..) => 1,
            Filter::And(..) => 2,
            _ => 3,
        };
        // Left-associative: a right operand of the same precedence needs parentheses.
        let binary = |f: &mut fmt::Formatter<'_>, a: &Filter, b: &Filter, word: &str| {
            let own = precedence(self);
            match precedence(a) < own {
                true => write!(f, "({a})")?,
                false => write!(f, "{a}")?,
            }
            match precedence(b) <= own {
                true => write!(f, " {word} ({b})"),
                false => write!(f, " {word} {b}"),
            }
        };
        match self {
            Filter::Or(a, b) => binary(f, a, b, "or"),
            Filter::And(a, b) => binary(f, a, b, "and"),
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::Compare { left, op, right } => write!(f, "{left} {op} {right}"),
            Filter::In { operand, values } => {
                write!(f, "{operand} in (")?;
                for (i, value) in values.iter().enumerate() {
                    write!(f, "{}{value}", if i == 0 { "" } else { ", " })?;
                }
                f.write_str(")")
            }
            Filter::Function { func, target, arg } => write!(f, "{func}({target}, {arg})"),
            Filter::Any {
                collection,
                variable,
                property,
                value,
            } => write!(
                f,
                "{}/any({variable}: {variable}/{} eq {value})",
                collection.join("/"),
                property.join("/")
            ),
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Property(path) => f.write_str(&path.join("/")),
            Operand::Literal(value) => write!(f, "{value}"),
            Operand::ToLower(inner) => write!(f, "tolower({inner})"),
            Operand::ToUpper(inner) => write!(f, "toupper({inner})"),
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Literal::Int(i) => write!(f, "{i}"),
            // `{:?}` keeps a `.0` or an exponent, so the value reads back as a Float.
            Literal::Float(x) => write!(f, "{x:?}"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Null => f.write_str("null"),
            Literal::DateTime(ts) => write!(f, "{ts}"),
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for StringFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Field whitelist and validation

/// How a filterable property is typed and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Text compared as is.
    Text,
    /// Text compared case-insensitively (e.g. resource `type`).
    TextCaseInsensitive,
    /// A point in time; compared with DateTimeOffset literals.
    Timestamp,
    /// A boolean.
    Bool,
    /// An integer.
    Int,
    /// A text property of the members of a collection property (path `collection/property`),
    /// matched only by `collection/any(x: x/property eq 'value')`. Its `column` is a boolean
    /// SQL predicate with one `?` placeholder for the value, true when some member of the
    /// row's collection has that value.
    AnyText,
}

/// One filterable and sortable property of a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The property path as the contract spells it, e.g. `status/subStatus`.
    pub path: &'static str,
    /// The storage column (opaque here).
    pub column: &'static str,
    /// The property's type.
    pub ty: FieldType,
}

impl Field {
    /// A field, for `const` whitelists.
    pub const fn new(path: &'static str, column: &'static str, ty: FieldType) -> Self {
        Self { path, column, ty }
    }
}

/// The filterable and sortable properties of one collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityFields {
    /// The entity name, for messages.
    pub entity: &'static str,
    /// The whitelist.
    pub fields: &'static [Field],
}

impl EntityFields {
    /// The field whose path equals `path` joined with `/`, ignoring ASCII case.
    pub fn resolve(&self, path: &[String]) -> Option<&'static Field> {
        self.fields.iter().find(|field| {
            let mut segments = field.path.split('/');
            let same = |p: &String| segments.next().is_some_and(|s| s.eq_ignore_ascii_case(p));
            path.iter().all(same) && segments.next().is_none()
        })
    }
}

/// The type of an operand, for validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Number,
    Bool,
    Timestamp,
    Null,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Text => "a string",
            Kind::Number => "a number",
            Kind::Bool => "a boolean",
            Kind::Timestamp => "a date-time",
            Kind::Null => "null",
        }
    }

    fn of_literal(value: &Literal) -> Kind {
        match value {
            Literal::String(_) => Kind::Text,
            Literal::Int(_) | Literal::Float(_) => Kind::Number,
            Literal::Bool(_) => Kind::Bool,
            Literal::Null => Kind::Null,
            Literal::DateTime(_) => Kind::Timestamp,
        }
    }

    fn of(operand: &Operand, fields: &EntityFields) -> Result<Kind> {
        match operand {
            Operand::Property(path) => match fields.resolve(path).map(|f| f.ty) {
                None => Err(bad!("unknown property `{}` in $filter", path.join("/"))),
                Some(FieldType::Text | FieldType::TextCaseInsensitive) => Ok(Kind::Text),
                Some(FieldType::Timestamp) => Ok(Kind::Timestamp),
                Some(FieldType::Bool) => Ok(Kind::Bool),
                Some(FieldType::Int) => Ok(Kind::Number),
                Some(FieldType::AnyText) => Err(collection_member(path)),
            },
            Operand::Literal(value) => Ok(Kind::of_literal(value)),
            Operand::ToLower(inner) | Operand::ToUpper(inner) => match Kind::of(inner, fields)? {
                Kind::Text => Ok(Kind::Text),
                k => Err(bad!(
                    "`{operand}` in $filter: `{inner}` is {}, not a string",
                    k.name()
                )),
            },
        }
    }
}

/// Refuses a collection member's property used outside an `any` lambda.
fn collection_member(path: &[String]) -> DomainError {
    let (collection, property) = match path.split_last() {
        Some((last, rest)) if !rest.is_empty() => (rest.join("/"), last.as_str()),
        _ => (path.join("/"), "id"),
    };
    bad!(
        "`{}` belongs to the members of a collection: filter it with `{collection}/any(x: x/{property} eq '…')`",
        path.join("/")
    )
}

fn mismatch(filter: &Filter, a: Kind, b: Kind) -> DomainError {
    let (a, b) = (a.name(), b.name());
    bad!("type mismatch in $filter: `{filter}` compares {a} with {b}")
}

/// Checks that every property of `filter` is in the whitelist and every comparison is well typed.
pub fn validate(filter: &Filter, fields: &EntityFields) -> Result<()> {
    match filter {
        Filter::And(a, b) | Filter::Or(a, b) => {
            validate(a, fields)?;
            validate(b, fields)
        }
        Filter::Not(inner) => validate(inner, fields),
        Filter::Compare { left, op, right } => {
            let (l, r) = (Kind::of(left, fields)?, Kind::of(right, fields)?);
            let null = l == Kind::Null || r == Kind::Null;
            if null && !matches!(op, CompareOp::Eq | CompareOp::Ne) {
                let why = "null can only be compared with `eq` or `ne`";
                return Err(bad!("`{filter}` in $filter: {why}"));
            }
            match l == r || null {
                true => Ok(()),
                false => Err(mismatch(filter, l, r)),
            }
        }
        Filter::In { operand, values } => {
            let kind = Kind::of(operand, fields)?;
            let mut kinds = values.iter().map(Kind::of_literal);
            match kinds.find(|k| *k != kind && *k != Kind::Null) {
                Some(other) => Err(mismatch(filter, kind, other)),
                None => Ok(()),
            }
        }
        Filter::Any {
            collection,
            property,
            value,
            ..
        } => {
            let path: Vec<String> = collection.iter().chain(property).cloned().collect();
            match fields.resolve(&path).map(|f| f.ty) {
                None => Err(bad!("unknown property `{}` in $filter", path.join("/"))),
                Some(FieldType::AnyText) => match Kind::of_literal(value) {
                    Kind::Text => Ok(()),
                    other => Err(mismatch(filter, Kind::Text, other)),
                },
                Some(_) => Err(bad!(
                    "`{}` is not a collection: `any` cannot be used on it",
                    collection.join("/")
                )),
            }
        }
        Filter::Function { func, target, arg } => {
            for operand in [target, arg] {
                let kind = Kind::of(operand, fields)?;
                if kind != Kind::Text {
                    let kind = kind.name();
                    return Err(bad!(
                        "`{func}` in $filter takes strings, but `{operand}` is {kind}"
                    ));
                }
            }
            Ok(())
        }
    }
}

/// Checks that every `$orderby` property is in the whitelist.
pub fn validate_orderby(orderby: &[OrderBy], fields: &EntityFields) -> Result<()> {
    for o in orderby {
        match fields.resolve(&o.path).map(|f| f.ty) {
            None => return Err(bad!("unknown property `{}` in $orderby", o.path.join("/"))),
            Some(FieldType::AnyText) => {
                let path = o.path.join("/");
                return Err(bad!(
                    "cannot $orderby `{path}`: it belongs to the members of a collection"
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Equality helpers

/// `property eq 'string'` (either way round): the lowercased path and the string.
fn string_equality(filter: &Filter) -> Option<(String, &str)> {
    let Filter::Compare {
        left,
        op: CompareOp::Eq,
        right,
    } = filter
    else {
        return None;
    };
    match (left, right) {
        (Operand::Property(p), Operand::Literal(Literal::String(s)))
        | (Operand::Literal(Literal::String(s)), Operand::Property(p)) => {
            Some((p.join("/").to_ascii_lowercase(), s))
        }
        _ => None,
    }
}

/// The `property eq 'string'` comparisons reached from the root only through `and`, as
/// (lowercased `/`-joined path, string) pairs in the order they appear.
pub fn top_level_equalities(filter: &Filter) -> Vec<(String, String)> {
    fn collect(filter: &Filter, out: &mut Vec<(String, String)>) {
        match filter {
            Filter::And(a, b) => {
                collect(a, out);
                collect(b, out);
            }
            other => out.extend(string_equality(other).map(|(p, s)| (p, s.to_owned()))),
        }
    }
    let mut out = Vec::new();
    collect(filter, &mut out);
    out
}

/// Replaces every `property eq 'string'` node anywhere in `filter` for which `f(path, string)`
/// (path lowercased and `/`-joined) returns a replacement.
pub fn map_equalities(filter: Filter, f: &mut dyn FnMut(&str, &str) -> Option<Filter>) -> Filter {
    let mut map = |x: Box<Filter>| Box::new(map_equalities(*x, f));
    match filter {
        Filter::And(a, b) => Filter::And(map(a), map(b)),
        Filter::Or(a, b) => Filter::Or(map(a), map(b)),
        Filter::Not(inner) => Filter::Not(map(inner)),
        other => match string_equality(&other).and_then(|(path, s)| f(&path, s)) {
            Some(replacement) => replacement,
            None => other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Filter {
        parse_filter(s).unwrap()
    }
    fn prop(path: &str) -> Operand {
        Operand::Property(path.split('/').map(String::from).collect())
    }
    fn lit(v: Literal) -> Operand {
        Operand::Literal(v)
    }
    fn text(v: &str) -> Literal {
        Literal::String(v.into())
    }
    fn cmp(left: Operand, op: CompareOp, right: Literal) -> Filter {
        Filter::Compare {
            left,
            op,
            right: lit(right),
        }
    }
    fn eq(path: &str, v: &str) -> Filter {
        cmp(prop(path), CompareOp::Eq, text(v))
    }
    fn and(a: Filter, b: Filter) -> Filter {
        Filter::And(Box::new(a), Box::new(b))
    }
    fn or(a: Filter, b: Filter) -> Filter {
        Filter::Or(Box::new(a), Box::new(b))
    }
    fn not(a: Filter) -> Filter {
        Filter::Not(Box::new(a))
    }
    fn func(func: StringFunction, target: Operand, arg: &str) -> Filter {
        Filter::Function {
            func,
            target,
            arg: lit(text(arg)),
        }
    }
    fn query(pairs: &[(&str, &str)]) -> Result<QueryOptions> {
        let pairs: Vec<_> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_query(&pairs)
    }
    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_filters() {
        use CompareOp::*;
        let at = |s: &str| Literal::DateTime(s.parse().unwrap());
        let ends = func(StringFunction::EndsWith, prop("n"), "z");
        let cases = [
            (
                "status/subStatus eq 'PendingApproval'",
                eq("status/subStatus", "PendingApproval"),
            ),
            (
                "(type eq 'resourcegroup' or type eq 'subscription')",
                or(eq("type", "resourcegroup"), eq("type", "subscription")),
            ),
            (
                "contains(tolower(displayName),'x')",
                func(
                    StringFunction::Contains,
                    Operand::ToLower(Box::new(prop("displayName"))),
                    "x",
                ),
            ),
            (
                "assignmentState in ('Eligible','Active')",
                Filter::In {
                    operand: prop("assignmentState"),
                    values: vec![text("Eligible"), text("Active")],
                },
            ),
            (
                "subject/id eq 'x' and assignmentState eq 'Eligible'",
                and(eq("subject/id", "x"), eq("assignmentState", "Eligible")),
            ),
            ("not (a eq 'b')", not(eq("a", "b"))),
            ("name eq 'O''Brien'", eq("name", "O'Brien")),
            ("name eq ''''", eq("name", "'")),
            (
                "startDateTime ge 2024-01-01T00:00:00Z",
                cmp(prop("startDateTime"), Ge, at("2024-01-01T00:00:00Z")),
            ),
            (
                "(t le 2024-05-01T10:00:00-05:00)",
                cmp(prop("t"), Le, at("2024-05-01T15:00:00Z")),
            ),
            (
                "t lt 2024-05-01T10:00:00.123+02:00",
                cmp(prop("t"), Lt, at("2024-05-01T08:00:00.123Z")),
            ),
            ("n eq -42", cmp(prop("n"), Eq, Literal::Int(-42))),
            ("n gt 1.5e3", cmp(prop("n"), Gt, Literal::Float(1500.0))),
            ("n ne 0.25", cmp(prop("n"), Ne, Literal::Float(0.25))),
            ("b EQ True", cmp(prop("b"), Eq, Literal::Bool(true))),
            ("x Ne null", cmp(prop("x"), Ne, Literal::Null)),
            (
                "id eq 8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
                eq("id", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"),
            ),
            (
                "'x' eq a",
                Filter::Compare {
                    left: lit(text("x")),
                    op: Eq,
                    right: prop("a"),
                },
            ),
            (
                "A eq 'x' AND NOT b eq 'y'",
                and(eq("A", "x"), not(eq("b", "y"))),
            ),
            (
                "STARTSWITH(ToUpper(name), 'AB')",
                func(
                    StringFunction::StartsWith,
                    Operand::ToUpper(Box::new(prop("name"))),
                    "AB",
                ),
            ),
            ("endswith(n,'z') eq true", ends.clone()),
            ("endswith(n,'z') eq false", not(ends.clone())),
            (
                "endswith(n,'z') ne false and a eq 'b'",
                and(ends, eq("a", "b")),
            ),
            // Precedence, low to high: or, and, not, comparison.
            (
                "a eq 'a' or b eq 'b' and not c eq 'c' or d eq 'd'",
                or(
                    or(eq("a", "a"), and(eq("b", "b"), not(eq("c", "c")))),
                    eq("d", "d"),
                ),
            ),
            (
                "a eq 'a' and (b eq 'b' or c eq 'c')",
                and(eq("a", "a"), or(eq("b", "b"), eq("c", "c"))),
            ),
            ("not not a eq 'a'", not(not(eq("a", "a")))),
            ("((a eq 'a'))", eq("a", "a")),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_filter(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn rejects_bad_filters() {
        let tolowers = format!("a eq {}'x'{}", "tolower(".repeat(70), ")".repeat(70));
        let cases = [
            (
                "displayName eq",
                "invalid $filter at position 14: expected a value after `eq`",
            ),
            (
                "",
                "position 0: expected a value at the start of the expression",
            ),
            (
                "displayName",
                "expected a comparison operator or `in` after `displayName`",
            ),
            (
                "true",
                "position 4: expected a comparison operator or `in` after `true`",
            ),
            ("'x'", "after `'x'`"),
            ("tolower(a)", "expected a comparison operator"),
            (
                "a eq 1 b",
                "invalid $filter at position 7: unexpected `b` after a complete expression",
            ),
            ("a eq 1)", "position 6: unexpected `)`"),
            ("(a eq 1", "expected `)` after the parenthesised expression"),
            ("a eq 'abc", "position 5: unterminated string literal"),
            ("length(a) eq 1", "unsupported function `length`"),
            ("a eq contains(b, 'c')", "unsupported function `contains`"),
            ("contains(a 'b')", "expected `,` after `a`"),
            ("a in ()", "expected a literal in the `in` list"),
            ("a in ('x',)", "expected a literal"),
            ("a in ('x', b)", "expected a literal"),
            ("a in 'x'", "expected `(` after `in`"),
            (
                "a eq 99999999999999999999",
                "invalid number `99999999999999999999`",
            ),
            ("a eq 12abc", "invalid number `12abc`"),
            ("a eq 1e999", "invalid number `1e999`"),
            ("a eq @x", "unexpected character `@`"),
            ("a/ eq 1", "expected a property name after `/`"),
            ("and eq 1", "expected a value at the start"),
            ("a eq or", "expected a value after `eq`"),
            ("a eq 1 and", "expected a value"),
            (
                "t eq 2024-13-01T00:00:00Z",
                "invalid date-time literal `2024-13-01T00:00:00Z`",
            ),
            ("t eq 2024-05-01", "position 5: invalid date-time literal"),
            (
                "t lt 0000-01-01T00:00:05.0+02:00",
                "lies outside the years 0000 to 9999 in UTC",
            ),
            (&"(".repeat(8000), "nested deeper than 64 levels"),
            (&format!("{}a eq 1", "not ".repeat(100)), "nested deeper"),
            (&tolowers, "nested deeper"),
            (
                &"a eq 1 or ".repeat(1000),
                "$filter is longer than 8192 bytes",
            ),
            (&vec!["a eq 1"; 600].join(" or "), "more than 2000 nodes"),
            (
                &format!("a in ({})", vec!["1"; 2100].join(",")),
                "more than 2000 nodes",
            ),
        ];
        for (input, message) in cases {
            let e = parse_filter(input).unwrap_err();
            assert_eq!(e.code, crate::error::ErrorCode::BadRequest);
            assert!(e.message.contains(message), "{input}: {}", e.message);
        }
        let nested = |n: usize| format!("{}a eq 1{}", "(".repeat(n), ")".repeat(n));
        assert!(parse_filter(&nested(MAX_DEPTH)).is_ok());
        assert!(parse_filter(&nested(MAX_DEPTH + 1)).is_err());
    }

    #[test]
    fn prints_canonical_odata() {
        for (input, printed) in [
            (
                "(a eq 'x' or b eq 'y') and not (c ne 'O''B') or d in ('1', 2, null, true)",
                "(a eq 'x' or b eq 'y') and not (c ne 'O''B') or d in ('1', 2, null, true)",
            ),
            (
                "a eq 'a' or (b eq 'b' or c eq 'c')",
                "a eq 'a' or (b eq 'b' or c eq 'c')",
            ),
            (
                "N EQ 1.0 and t lt 2024-05-01T10:00:00+02:00",
                "N eq 1.0 and t lt 2024-05-01T08:00:00Z",
            ),
            ("contains(tolower(x),'y')", "contains(tolower(x), 'y')"),
        ] {
            assert_eq!(parse(input).to_string(), printed);
        }
        // A wide `or` chain under the node limit parses and prints without trouble.
        let wide = vec!["a eq 1"; 400].join(" or ");
        assert_eq!(parse(&wide).to_string(), wide);
    }

    #[test]
    fn parses_query_options() {
        let q = query(&[
            ("$filter", "a eq 'x'"),
            ("OrderBy", "a/b desc, c, d ASC"),
            ("$SELECT", "id, displayName,*"),
            ("$top", "999"),
            ("skip", "20"),
            ("$count", "true"),
            ("api-version", "2024-01-01"),
        ])
        .unwrap();
        assert_eq!(q.filter, Some(eq("a", "x")));
        let ob = |p: &[&str], descending| OrderBy {
            path: strings(p),
            descending,
        };
        assert_eq!(
            q.orderby,
            [ob(&["a", "b"], true), ob(&["c"], false), ob(&["d"], false)]
        );
        assert_eq!(q.select, Some(strings(&["id", "displayName", "*"])));
        assert_eq!((q.top, q.skip, q.count), (Some(999), Some(20), true));
        assert_eq!(query(&[]).unwrap(), QueryOptions::default());
        assert!(!query(&[("$count", "false")]).unwrap().count);
    }

    #[test]
    fn parses_expand() {
        let value = "subject,roleDefinition($expand=resource;$select=id,displayName),linkedEligibleRoleAssignment";
        let q = query(&[("$expand", value)]).unwrap();
        let paths: Vec<&str> = q.expand.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["subject", "roleDefinition", "linkedEligibleRoleAssignment"]
        );
        assert_eq!(q.expand[0].options, QueryOptions::default());
        let nested = &q.expand[1].options;
        let resource = Expand {
            path: "resource".into(),
            options: QueryOptions::default(),
        };
        assert_eq!(nested.expand, [resource]);
        assert_eq!(nested.select, Some(strings(&["id", "displayName"])));

        let value = "a(filter=n eq 'x,y;(z' and m eq 1; top=5;$expand=b(select=c))";
        let a = &query(&[("expand", value)]).unwrap().expand[0].options;
        let m = cmp(prop("m"), CompareOp::Eq, Literal::Int(1));
        assert_eq!(a.filter, Some(and(eq("n", "x,y;(z"), m)));
        assert_eq!(a.top, Some(5));
        assert_eq!(a.expand[0].options.select, Some(strings(&["c"])));
        assert_eq!(query(&[("$expand", "*")]).unwrap().expand[0].path, "*");
    }

    #[test]
    fn rejects_bad_query_options() {
        let deep = format!("{}{}", "a($expand=".repeat(9), ")".repeat(9));
        let long = "a,".repeat(5000);
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("$search", "x")], "unsupported query option `$search`"),
            (
                &[("$skiptoken", "x")],
                "unsupported query option `$skiptoken`",
            ),
            (&[("$format", "json")], "unsupported query option `$format`"),
            (&[("$APPLY", "x")], "unsupported query option `$APPLY`"),
            (&[("$", "x")], "unsupported query option `$`"),
            (
                &[("$filter", "a eq 1"), ("filter", "b eq 1")],
                "`$filter` is given more than once",
            ),
            (
                &[("$top", "1000")],
                "invalid $top `1000`: expected an integer from 0 to 999",
            ),
            (&[("$top", "abc")], "invalid $top `abc`"),
            (&[("$top", "-1")], "invalid $top `-1`"),
            (&[("$top", "")], "invalid $top ``"),
            (&[("$skip", "1.5")], "invalid $skip `1.5`"),
            (
                &[("$count", "yes")],
                "invalid $count `yes`: expected `true` or `false`",
            ),
            (
                &[("$orderby", "a sideways")],
                "invalid $orderby item `a sideways`",
            ),
            (&[("$orderby", "a desc desc")], "invalid $orderby item"),
            (&[("$orderby", "a,")], "invalid $orderby item ``"),
            (&[("$orderby", "a-b")], "invalid property `a-b` in $orderby"),
            (&[("$select", "id,,x")], "invalid property `` in $select"),
            (&[("$select", &long)], "$select is longer than 8192 bytes"),
            (&[("$filter", "a eq")], "expected a value after `eq`"),
            (&[("$expand", "a(foo=1)")], "unsupported query option `foo`"),
            (
                &[("$expand", "a($top=1;$top=2)")],
                "`$top` is given more than once",
            ),
            (
                &[("$expand", "a(top)")],
                "invalid option `top` in $expand item `a`: expected `name=value`",
            ),
            (&[("$expand", "a()")], "empty item in $expand"),
            (
                &[("$expand", "a(top=1")],
                "unbalanced parentheses or quotes in $expand",
            ),
            (&[("$expand", "a)")], "unbalanced `)` in $expand `a)`"),
            (
                &[("$expand", "a(top=1)x")],
                "invalid $expand item `a(top=1)x`: expected `)` at the end",
            ),
            (&[("$expand", "a,,b")], "empty item in $expand `a,,b`"),
            (&[("$expand", "a b")], "invalid property `a b` in $expand"),
            (
                &[("$expand", &deep)],
                "$expand is nested deeper than 8 levels",
            ),
        ];
        for (pairs, message) in cases {
            let e = query(pairs).unwrap_err();
            assert!(e.message.contains(message), "{pairs:?}: {}", e.message);
        }
    }

    const FIELDS: EntityFields = EntityFields {
        entity: "test",
        fields: &[
            Field::new("status/subStatus", "sub", FieldType::Text),
            Field::new("displayName", "name", FieldType::Text),
            Field::new("type", "type", FieldType::TextCaseInsensitive),
            Field::new("startDateTime", "start", FieldType::Timestamp),
            Field::new("isActive", "active", FieldType::Bool),
            Field::new("count", "n", FieldType::Int),
        ],
    };

    #[test]
    fn resolves_and_validates() {
        let path = |s: &str| strings(&s.split('/').collect::<Vec<_>>());
        assert_eq!(
            FIELDS.resolve(&path("STATUS/substatus")).map(|f| f.column),
            Some("sub")
        );
        assert!(FIELDS.resolve(&path("status")).is_none());
        assert!(FIELDS.resolve(&path("status/subStatus/x")).is_none());
        for ok in [
            "status/subStatus eq 'PendingApproval' and TYPE in ('a', null)",
            "startDateTime ge 2024-01-01T00:00:00Z or startDateTime eq null",
            "count gt 1.5 and count le 3 and isActive eq false and not (displayName ne null)",
            "contains(tolower(displayName), 'x') or startswith(type, toupper('y'))",
            "displayName eq type and 'a' eq 'b'",
        ] {
            assert_eq!(validate(&parse(ok), &FIELDS), Ok(()), "{ok}");
        }
        for (input, message) in [
            ("foo eq 'x'", "unknown property `foo` in $filter"),
            ("status eq 'x'", "unknown property `status` in $filter"),
            ("a/b in ('x')", "unknown property `a/b` in $filter"),
            (
                "startDateTime ge 'x'",
                "`startDateTime ge 'x'` compares a date-time with a string",
            ),
            ("count eq 'x'", "compares a number with a string"),
            ("isActive eq 1", "compares a boolean with a number"),
            ("displayName eq 1", "compares a string with a number"),
            (
                "startDateTime in (2024-01-01T00:00:00Z, 3)",
                "compares a date-time with a number",
            ),
            (
                "count gt null",
                "null can only be compared with `eq` or `ne`",
            ),
            (
                "contains(count, '1')",
                "`contains` in $filter takes strings, but `count` is a number",
            ),
            ("endswith(displayName, null)", "takes strings"),
            (
                "tolower(count) eq 'x'",
                "`tolower(count)` in $filter: `count` is a number",
            ),
        ] {
            let e = validate(&parse(input), &FIELDS).unwrap_err();
            assert!(e.message.contains(message), "{input}: {}", e.message);
        }
        let ob = |p: &str| OrderBy {
            path: path(p),
            descending: false,
        };
        assert_eq!(
            validate_orderby(&[ob("Status/SubStatus"), ob("count")], &FIELDS),
            Ok(())
        );
        let e = validate_orderby(&[ob("count"), ob("nope")], &FIELDS).unwrap_err();
        assert_eq!(e.message, "unknown property `nope` in $orderby");
    }

    #[test]
    fn parses_any_lambdas() {
        let any = |collection: &str, variable: &str, property: &str, value: Literal| Filter::Any {
            collection: strings(&collection.split('/').collect::<Vec<_>>()),
            variable: variable.into(),
            property: strings(&property.split('/').collect::<Vec<_>>()),
            value,
        };
        let guid = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
        let cases = [
            (
                "targetResources/any(t: t/id eq 'abc')",
                any("targetResources", "t", "id", text("abc")),
            ),
            (
                "targetResources/ANY(x:x/id eq 8e3af657-a8ff-443c-a75c-2fe8c4bcb635)",
                any("targetResources", "x", "id", text(guid)),
            ),
            (
                "a/b/any( t : t/c/d eq 1 ) and not (targetResources/any(t: t/id eq 'x'))",
                and(
                    any("a/b", "t", "c/d", Literal::Int(1)),
                    not(any("targetResources", "t", "id", text("x"))),
                ),
            ),
        ];
        for (input, expected) in cases {
            let parsed = parse(input);
            assert_eq!(parsed, expected, "{input}");
            assert_eq!(parse(&parsed.to_string()), parsed, "{input}");
        }
        assert_eq!(
            parse("targetResources/any(t:t/id eq 'O''B')").to_string(),
            "targetResources/any(t: t/id eq 'O''B')"
        );
        for (input, message) in [
            (
                "targetResources/all(t: t/id eq 'x')",
                "only `any` lambdas are supported",
            ),
            (
                "targetResources/any(t t/id eq 'x')",
                "expected `:` after `any(t`",
            ),
            (
                "targetResources/any(: t/id eq 'x')",
                "expected a range variable",
            ),
            (
                "targetResources/any(t: x/id eq 'x')",
                "expected `t/property eq value` in `any`",
            ),
            (
                "targetResources/any(t: t eq 'x')",
                "expected `t/property eq value`",
            ),
            (
                "targetResources/any(t: t/id ne 'x')",
                "only `eq` is supported inside `any`",
            ),
            (
                "targetResources/any(t: t/id eq t/x)",
                "expected a literal after `eq`",
            ),
            (
                "targetResources/any(t: t/id eq 'x'",
                "expected `)` after the `any` expression",
            ),
            ("targetResources/any()", "expected a range variable"),
            ("any(t: t/id eq 'x')", "unsupported function `any`"),
            ("a : b", "expected a comparison operator"),
        ] {
            let e = parse_filter(input).unwrap_err();
            assert!(e.message.contains(message), "{input}: {}", e.message);
        }
    }

    #[test]
    fn validates_any_lambdas() {
        const AUDIT: EntityFields = EntityFields {
            entity: "audit",
            fields: &[
                Field::new("category", "c", FieldType::Text),
                Field::new("targetResources/id", "t IN (?)", FieldType::AnyText),
            ],
        };
        for ok in [
            "targetResources/any(t: t/id eq 'x')",
            "category eq 'Policy' or not targetResources/any(T: T/ID eq 'x')",
        ] {
            assert_eq!(validate(&parse(ok), &AUDIT), Ok(()), "{ok}");
        }
        for (input, message) in [
            (
                "targetResources/id eq 'x'",
                "`targetResources/id` belongs to the members of a collection: filter it with `targetResources/any(x: x/id eq '…')`",
            ),
            (
                "contains(targetResources/id, 'x')",
                "belongs to the members of a collection",
            ),
            (
                "targetResources/any(t: t/id eq 1)",
                "compares a string with a number",
            ),
            (
                "targetResources/any(t: t/name eq 'x')",
                "unknown property `targetResources/name` in $filter",
            ),
            (
                "category/any(t: t/id eq 'x')",
                "unknown property `category/id`",
            ),
        ] {
            let e = validate(&parse(input), &AUDIT).unwrap_err();
            assert!(e.message.contains(message), "{input}: {}", e.message);
        }
        const PLAIN: EntityFields = EntityFields {
            entity: "plain",
            fields: &[Field::new("a/id", "x", FieldType::Text)],
        };
        let e = validate(&parse("a/any(t: t/id eq 'x')"), &PLAIN).unwrap_err();
        assert_eq!(
            e.message,
            "`a` is not a collection: `any` cannot be used on it"
        );
        let ob = OrderBy {
            path: strings(&["targetResources", "id"]),
            descending: false,
        };
        let e = validate_orderby(&[ob], &AUDIT).unwrap_err();
        assert!(
            e.message.contains("cannot $orderby `targetResources/id`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn finds_and_maps_equalities() {
        let pair = |p: &str, v: &str| (p.to_string(), v.to_string());
        let f = parse("resourceId eq 'x' and (a eq 1 or b eq 'y')");
        assert_eq!(top_level_equalities(&f), [pair("resourceid", "x")]);
        let f =
            parse("Subject/Id eq 'u' and not (x eq 'y') and 'z' eq roleDefinitionId and n eq 1");
        let expected = [pair("subject/id", "u"), pair("roledefinitionid", "z")];
        assert_eq!(top_level_equalities(&f), expected);
        assert!(top_level_equalities(&parse("a eq 'x' or b eq 'y'")).is_empty());

        let f = parse("subjectId eq 'u' or not (SubjectId eq 'v') and other eq 'w'");
        let mapped = map_equalities(f, &mut |path, value| {
            let values = vec![text(value), text("g1")];
            (path == "subjectid").then(|| Filter::In {
                operand: prop("subjectId"),
                values,
            })
        });
        let expected =
            "subjectId in ('u', 'g1') or not (subjectId in ('v', 'g1')) and other eq 'w'";
        assert_eq!(mapped.to_string(), expected);
    }

    fn token_soup() -> impl Strategy<Value = String> {
        let tokens = [
            "eq",
            "(",
            ")",
            "'x'",
            "and",
            "or",
            "not",
            "a/b",
            "in",
            ",",
            "1",
            "-2.5",
            "null",
            "true",
            "contains",
            "tolower",
            "2024-01-01T00:00:00Z",
            "'",
            "/",
            "-",
            "a",
            "e",
            "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        ];
        let token = (
            prop::sample::select(tokens.to_vec()),
            prop::sample::select(vec!["", " "]),
        );
        prop::collection::vec(token, 0..40)
            .prop_map(|parts| parts.into_iter().map(|(t, s)| format!("{t}{s}")).collect())
    }

    fn ident() -> impl Strategy<Value = String> {
        "[a-zA-Z_][a-zA-Z0-9_]{0,6}".prop_filter("keyword", |s| {
            !is_reserved(s)
                && !["true", "false", "null"]
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(s))
        })
    }

    fn literal_strategy() -> impl Strategy<Value = Literal> {
        let seconds = -30_000_000_000i64..253_402_300_000;
        prop_oneof![
            ".{0,6}".prop_map(Literal::String),
            any::<i64>().prop_map(Literal::Int),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Literal::Float),
            any::<bool>().prop_map(Literal::Bool),
            Just(Literal::Null),
            (seconds, 0..1_000_000_000i32)
                .prop_map(|(s, n)| Literal::DateTime(Timestamp::new(s, n).unwrap())),
        ]
    }

    fn operand_strategy() -> impl Strategy<Value = Operand> {
        let leaf = prop_oneof![
            prop::collection::vec(ident(), 1..3).prop_map(Operand::Property),
            literal_strategy().prop_map(Operand::Literal),
        ];
        leaf.prop_recursive(2, 4, 1, |inner| {
            prop_oneof![
                inner.clone().prop_map(|o| Operand::ToLower(Box::new(o))),
                inner.prop_map(|o| Operand::ToUpper(Box::new(o))),
            ]
        })
    }

    fn filter_strategy() -> impl Strategy<Value = Filter> {
        let ops = prop::sample::select(CompareOp::ALL.map(|(_, op)| op).to_vec());
        let funcs = [
            StringFunction::Contains,
            StringFunction::StartsWith,
            StringFunction::EndsWith,
        ];
        let (o, values) = (
            operand_strategy,
            prop::collection::vec(literal_strategy(), 1..4),
        );
        let leaf = prop_oneof![
            (o(), ops, o()).prop_map(|(left, op, right)| Filter::Compare { left, op, right }),
            (o(), values).prop_map(|(operand, values)| Filter::In { operand, values }),
            (prop::sample::select(funcs.to_vec()), o(), o())
                .prop_map(|(func, target, arg)| Filter::Function { func, target, arg }),
            (
                prop::collection::vec(ident(), 1..3),
                ident(),
                prop::collection::vec(ident(), 1..3),
                literal_strategy()
            )
                .prop_map(|(collection, variable, property, value)| Filter::Any {
                    collection,
                    variable,
                    property,
                    value
                }),
        ];
        leaf.prop_recursive(5, 24, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| and(a, b)),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| or(a, b)),
                inner.prop_map(not),
            ]
        })
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_input(s in "\\PC{0,80}") {
            let _ = parse_filter(&s);
            let _ = query(&[("$expand", &s), ("$orderby", &s), ("$select", &s)]);
        }

        #[test]
        fn never_panics_on_token_soup(s in token_soup()) {
            if let Ok(f) = parse_filter(&s) {
                prop_assert_eq!(parse_filter(&f.to_string()), Ok(f));
            }
            let _ = query(&[("$expand", &format!("x($filter={s})"))]);
        }

        #[test]
        fn printing_round_trips(f in filter_strategy()) {
            prop_assert_eq!(parse_filter(&f.to_string()), Ok(f));
        }
    }
}
