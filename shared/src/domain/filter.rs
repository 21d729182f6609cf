//! The `filterQuery` language of list endpoints: a real parser (tokenizer +
//! recursive descent) producing an AST, and its evaluation against one entity.
//!
//! The language follows the upstream Kubeflow Model Registry server: SQL-like
//! conditions `property operator value` joined by `AND` / `OR` (`AND` binds
//! tighter), with parentheses for grouping, e.g.
//! `name LIKE 'mnist%' AND (accuracy.double_value > 0.9 OR tag = 'prod')`.
//!
//! ```ignore
//! let expr: Expr = filter::parse("name LIKE 'mnist%' AND (accuracy.double_value > 0.9 OR tag = 'prod')")?;
//! let keep: bool = expr.matches(&entity); // entity: &impl FilterTarget
//! ```
//!
//! Grammar (keywords are case-insensitive):
//!
//! ```text
//! query     := or_expr END
//! or_expr   := and_expr ( OR and_expr )*
//! and_expr  := primary ( AND primary )*
//! primary   := '(' or_expr ')' | condition
//! condition := property ( '=' | '!=' | '<>' | '<' | '<=' | '>' | '>=' ) value
//!            | property ( LIKE | ILIKE ) string
//!            | property IN '(' value ( ',' value )* ')'
//! property  := ident ( '.' ident )*            -- e.g. name, foo.bar, acc.double_value
//!            | '`' any text '`' [ '.' suffix ]  -- e.g. `my-prop.x`.int_value
//! suffix    := string_value | int_value | double_value | bool_value
//! value     := string | integer | float | TRUE | FALSE
//! string    := '...' | "..."   -- \' \" \\ escapes, doubled quotes ('it''s')
//! ```
//!
//! * Input must be printable ASCII (tab, newline and CR count as whitespace),
//!   at most [`MAX_QUERY_LEN`] bytes, with at most [`MAX_NESTING_DEPTH`] levels
//!   of parentheses.
//! * A property with a type suffix is always a custom property of exactly that
//!   type. Without a suffix it is an own field when
//!   [`FilterTarget::own_field`] knows the name, else a custom property.
//! * Keywords (`and or like ilike in true false not`) cannot be used as bare
//!   property names; backquote them (`` `in` = 1 ``).
//! * `LIKE` / `ILIKE` patterns use `%` (any sequence) and `_` (one character);
//!   a backslash makes the next pattern character literal (`'50\%'`). Note the
//!   string literal itself also treats `\\` as one backslash, so a literal
//!   backslash in a pattern is written `'\\\\'`. A pattern is at most
//!   [`MAX_LIKE_PATTERN_LEN`] characters long (after the string's own escapes).
//!   Matching takes time linear in the text: segments between `%` without `_`
//!   are found by substring search, those with `_` by a bit-parallel search whose
//!   cost grows with the segment length by steps of 64 characters (see
//!   [`Expr::cost_per_byte`]).
//! * A missing or unset property makes every condition on it false (`!=`
//!   included); so does a value that cannot be compared with the literal.

use std::cmp::Ordering;
use std::fmt;

/// Maximum accepted length of a filter query, in bytes.
pub const MAX_QUERY_LEN: usize = 4096;

/// Maximum nesting depth of parentheses in a filter query.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Maximum length of one `LIKE` / `ILIKE` pattern, in characters.
///
/// Bounds the work per byte of text of a pattern with long `_` segments, and the memory
/// of its compiled form.
pub const MAX_LIKE_PATTERN_LEN: usize = 1024;

/// A value seen by the filter: a literal in the query, or a field/property value of an entity.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A text value.
    Str(String),
    /// A 64-bit integer (ids and times of own fields are integers).
    Int(i64),
    /// A double-precision float.
    Double(f64),
    /// A boolean.
    Bool(bool),
}

impl Scalar {
    /// The type of this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            Scalar::Str(_) => ValueType::String,
            Scalar::Int(_) => ValueType::Int,
            Scalar::Double(_) => ValueType::Double,
            Scalar::Bool(_) => ValueType::Bool,
        }
    }
}

/// Explicit type picked with a `.string_value`/`.int_value`/`.double_value`/`.bool_value` suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// `.string_value`
    String,
    /// `.int_value`
    Int,
    /// `.double_value`
    Double,
    /// `.bool_value`
    Bool,
}

impl ValueType {
    /// The suffix selecting this type, without the leading dot (e.g. `"int_value"`).
    pub fn suffix(self) -> &'static str {
        match self {
            ValueType::String => "string_value",
            ValueType::Int => "int_value",
            ValueType::Double => "double_value",
            ValueType::Bool => "bool_value",
        }
    }

    /// The type selected by a suffix (without the leading dot); exact, lowercase match.
    pub fn from_suffix(suffix: &str) -> Option<ValueType> {
        match suffix {
            "string_value" => Some(ValueType::String),
            "int_value" => Some(ValueType::Int),
            "double_value" => Some(ValueType::Double),
            "bool_value" => Some(ValueType::Bool),
            _ => None,
        }
    }

    fn description(self) -> &'static str {
        match self {
            ValueType::String => "a string",
            ValueType::Int => "an integer",
            ValueType::Double => "a double",
            ValueType::Bool => "a boolean",
        }
    }
}

/// What an entity exposes to a filter.
pub trait FilterTarget {
    /// An own (schema) field by its wire name (`name`, `state`, `id`, `externalId`,
    /// `createTimeSinceEpoch`, `registeredModelId`, `uri`, ...).
    /// `None` = this name is not an own field of the entity (so the filter treats it as a
    /// custom property); `Some(None)` = own field, unset; `Some(Some(v))` = its value.
    /// Ids and times come back as `Scalar::Int`.
    fn own_field(&self, name: &str) -> Option<Option<Scalar>>;
    /// A custom property's value (struct values are not exposed: `None`).
    fn custom_property(&self, name: &str) -> Option<Scalar>;
}

/// A syntax or semantic error, with the byte position it points at.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid filterQuery at position {position}: {message}")]
pub struct FilterError {
    /// Byte offset in the query the error points at (the input length for "end of query").
    pub position: usize,
    /// Human-readable explanation, meant to help the user fix the query.
    pub message: String,
}

fn error<T>(position: usize, message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError {
        position,
        message: message.into(),
    })
}

/// Parsed filter expression (AST).
///
/// Build it with [`parse`] (or `str::parse`), evaluate it with [`Expr::matches`].
/// Its `Display` form is a canonical query string that parses back to an equal `Expr`.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// At least two operands.
    Or(Vec<Node>),
    /// At least two operands.
    And(Vec<Node>),
    Cond(Condition),
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    prop: Property,
    test: Test,
}

#[derive(Debug, Clone, PartialEq)]
struct Property {
    name: String,
    /// `Some` = explicit suffix: custom property of exactly that type.
    value_type: Option<ValueType>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    fn is_ordering(self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }

    fn holds(self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Incomparable => false,
            Outcome::Equality(eq) => match self {
                CmpOp::Eq => eq,
                CmpOp::Ne => !eq,
                _ => false,
            },
            Outcome::Ordered(ord) => match self {
                CmpOp::Eq => ord == Ordering::Equal,
                CmpOp::Ne => ord != Ordering::Equal,
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::Le => ord != Ordering::Greater,
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::Ge => ord != Ordering::Less,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Compare {
        op: CmpOp,
        value: Scalar,
    },
    Like {
        pattern: String,
        case_insensitive: bool,
        compiled: LikePattern,
    },
    /// Non-empty.
    In(Vec<Scalar>),
}

// ---------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------

/// Parse a filterQuery. Empty or all-whitespace input is an error only if the caller
/// passes it (callers skip empty strings).
pub fn parse(input: &str) -> Result<Expr, FilterError> {
    if input.len() > MAX_QUERY_LEN {
        return error(
            MAX_QUERY_LEN,
            format!(
                "the filter query is too long ({} bytes; the maximum is {MAX_QUERY_LEN})",
                input.len()
            ),
        );
    }
    check_charset(input)?;
    if input.bytes().all(is_space) {
        return error(
            0,
            "the filter query is empty; expected a condition such as name = 'x'",
        );
    }
    let mut parser = Parser {
        lexer: Lexer {
            src: input.as_bytes(),
            pos: 0,
        },
        input,
        peeked: None,
        depth: 0,
    };
    let root = parser.parse_or()?;
    let tok = parser.bump()?;
    match tok.kind {
        TokKind::End => Ok(Expr { root }),
        TokKind::RParen => error(tok.pos, "unmatched ')' (no '(' is open here)"),
        _ => error(
            tok.pos,
            format!(
                "expected AND, OR or the end of the query but found {}",
                parser.describe(&tok)
            ),
        ),
    }
}

impl Expr {
    /// True when the entity satisfies the expression.
    pub fn matches(&self, target: &dyn FilterTarget) -> bool {
        self.root.eval(target)
    }

    /// Estimated work units per byte of text that evaluating the filter scans: the sum,
    /// over its `LIKE` / `ILIKE` conditions, of 1 plus the number of 64-character steps
    /// of its longest segment between two `%` that contains `_` (`'%a_b%'` costs 2,
    /// `'abc%'` 1); 0 without `LIKE`.
    ///
    /// Other conditions cost about nothing per byte. Multiplied by the bytes of text of a
    /// batch of entities, it tells whether filtering the batch is CPU-heavy enough to run
    /// off the async workers.
    pub fn cost_per_byte(&self) -> usize {
        self.root.cost_per_byte()
    }
}

impl std::str::FromStr for Expr {
    type Err = FilterError;

    /// Same as [`parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

// ---------------------------------------------------------------------------
// Character classes and input validation
// ---------------------------------------------------------------------------

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_ident(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if is_ident_start(b) => bytes.all(is_ident_char),
        _ => false,
    }
}

const KEYWORDS: [&str; 8] = ["and", "or", "like", "ilike", "in", "true", "false", "not"];

fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

fn check_charset(input: &str) -> Result<(), FilterError> {
    for (pos, b) in input.bytes().enumerate() {
        if (0x20..=0x7e).contains(&b) || is_space(b) {
            continue;
        }
        if b.is_ascii() {
            return error(
                pos,
                format!(
                    "control character 0x{b:02X} is not allowed; a filter query must be printable ASCII"
                ),
            );
        }
        // Every byte before `pos` is ASCII, so `pos` is a char boundary.
        let shown = input
            .get(pos..)
            .and_then(|rest| rest.chars().next())
            .map(|c| format!("'{c}' (U+{:04X})", u32::from(c)))
            .unwrap_or_else(|| format!("byte 0x{b:02X}"));
        return error(
            pos,
            format!(
                "non-ASCII character {shown} is not allowed; a filter query must be printable ASCII \
                 (check for typographic quotes or invisible characters)"
            ),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum TokKind {
    /// Identifier, possibly dotted (`name`, `foo.bar`, `acc.double_value`) or a keyword.
    Word(String),
    /// Backquoted property name, with optional type suffix.
    BackName {
        name: String,
        value_type: Option<ValueType>,
    },
    Str(String),
    Int(i64),
    Double(f64),
    Op(CmpOp),
    LParen,
    RParen,
    Comma,
    End,
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: TokKind,
    pos: usize,
    end: usize,
}

struct Lexer<'a> {
    /// Validated printable ASCII.
    src: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.src.get(self.pos + offset).copied()
    }

    fn text(&self, start: usize, end: usize) -> String {
        self.src
            .get(start..end)
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .unwrap_or_default()
    }

    fn next_token(&mut self) -> Result<Token, FilterError> {
        while self.peek_at(0).is_some_and(is_space) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(b) = self.peek_at(0) else {
            return Ok(Token {
                kind: TokKind::End,
                pos: start,
                end: start,
            });
        };
        let kind = match b {
            b'(' => {
                self.pos += 1;
                TokKind::LParen
            }
            b')' => {
                self.pos += 1;
                TokKind::RParen
            }
            b',' => {
                self.pos += 1;
                TokKind::Comma
            }
            b'\'' | b'"' => self.lex_string(b)?,
            b'`' => self.lex_backname()?,
            b'=' | b'!' | b'<' | b'>' => self.lex_operator()?,
            b'-' | b'0'..=b'9' => self.lex_number()?,
            b if is_ident_start(b) => TokKind::Word(self.lex_path()?),
            b'.' => {
                return error(
                    start,
                    "unexpected '.'; a property name must start with a letter or '_' \
                     (use backquotes for other names), and numbers need a digit before '.'",
                );
            }
            _ => {
                return error(
                    start,
                    format!(
                        "unexpected character '{}'; expected a property, value, operator, \
                         parenthesis, AND or OR",
                        char::from(b)
                    ),
                );
            }
        };
        Ok(Token {
            kind,
            pos: start,
            end: self.pos,
        })
    }

    fn lex_ident(&mut self) {
        while self.peek_at(0).is_some_and(is_ident_char) {
            self.pos += 1;
        }
    }

    /// `ident ( '.' ident )*`, starting at an identifier-start byte.
    fn lex_path(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        self.lex_ident();
        while self.peek_at(0) == Some(b'.') {
            if !self.peek_at(1).is_some_and(is_ident_start) {
                return error(
                    self.pos,
                    format!(
                        "'.' in property name '{}.' must be followed by a name part \
                         (letters, digits, '_'; use backquotes for other names)",
                        self.text(start, self.pos)
                    ),
                );
            }
            self.pos += 1;
            self.lex_ident();
        }
        Ok(self.text(start, self.pos))
    }

    fn lex_backname(&mut self) -> Result<TokKind, FilterError> {
        let start = self.pos;
        self.pos += 1;
        let mut name = String::new();
        loop {
            match self.peek_at(0) {
                None => {
                    return error(
                        start,
                        format!(
                            "unclosed backquoted property name starting at position {start}: \
                             missing closing '`'"
                        ),
                    );
                }
                Some(b'`') if self.peek_at(1) == Some(b'`') => {
                    name.push('`');
                    self.pos += 2;
                }
                Some(b'`') => {
                    self.pos += 1;
                    break;
                }
                Some(b) => {
                    name.push(char::from(b));
                    self.pos += 1;
                }
            }
        }
        if name.is_empty() {
            return error(start, "empty backquoted property name ``");
        }
        let mut value_type = None;
        if self.peek_at(0) == Some(b'.') {
            let dot = self.pos;
            self.pos += 1;
            let suffix_start = self.pos;
            self.lex_ident();
            let suffix = self.text(suffix_start, self.pos);
            value_type = ValueType::from_suffix(&suffix);
            if value_type.is_none() {
                return error(
                    dot,
                    format!(
                        "unknown type suffix '.{suffix}' after backquoted name `{name}`; \
                         expected .string_value, .int_value, .double_value or .bool_value \
                         (put the whole property name inside the backquotes)"
                    ),
                );
            }
            if self.peek_at(0) == Some(b'.') {
                return error(
                    self.pos,
                    format!("nothing may follow the type suffix '.{suffix}'"),
                );
            }
        }
        Ok(TokKind::BackName { name, value_type })
    }

    fn lex_string(&mut self, quote: u8) -> Result<TokKind, FilterError> {
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            match self.peek_at(0) {
                None => {
                    return error(
                        start,
                        format!(
                            "unclosed string literal starting at position {start}: missing closing {}",
                            char::from(quote)
                        ),
                    );
                }
                Some(b'\\') => match self.peek_at(1) {
                    Some(next @ (b'\'' | b'"' | b'\\')) => {
                        value.push(char::from(next));
                        self.pos += 2;
                    }
                    _ => {
                        // Unknown escape: keep the backslash (LIKE uses it as its escape).
                        value.push('\\');
                        self.pos += 1;
                    }
                },
                Some(b) if b == quote => {
                    if self.peek_at(1) == Some(quote) {
                        value.push(char::from(quote));
                        self.pos += 2;
                    } else {
                        self.pos += 1;
                        return Ok(TokKind::Str(value));
                    }
                }
                Some(b) => {
                    value.push(char::from(b));
                    self.pos += 1;
                }
            }
        }
    }

    fn lex_operator(&mut self) -> Result<TokKind, FilterError> {
        let start = self.pos;
        while self
            .peek_at(0)
            .is_some_and(|b| matches!(b, b'=' | b'!' | b'<' | b'>'))
        {
            self.pos += 1;
        }
        let text = self.text(start, self.pos);
        let op = match text.as_str() {
            "=" => CmpOp::Eq,
            "!=" | "<>" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            _ => {
                return error(
                    start,
                    format!(
                        "unknown operator '{text}'; use one of =, !=, <>, <, <=, >, >=, LIKE, ILIKE, IN"
                    ),
                );
            }
        };
        Ok(TokKind::Op(op))
    }

    fn lex_digits(&mut self) -> usize {
        let start = self.pos;
        while self.peek_at(0).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn lex_number(&mut self) -> Result<TokKind, FilterError> {
        let start = self.pos;
        if self.peek_at(0) == Some(b'-') {
            self.pos += 1;
            if !self.peek_at(0).is_some_and(|b| b.is_ascii_digit()) {
                return error(
                    start,
                    "'-' must be directly followed by the digits of a number (e.g. -5, -0.25)",
                );
            }
        }
        self.lex_digits();
        let mut is_float = false;
        if self.peek_at(0) == Some(b'.') && self.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
            self.lex_digits();
            is_float = true;
        }
        if matches!(self.peek_at(0), Some(b'e' | b'E')) {
            let mut offset = 1;
            if matches!(self.peek_at(1), Some(b'+' | b'-')) {
                offset = 2;
            }
            if self.peek_at(offset).is_some_and(|b| b.is_ascii_digit()) {
                self.pos += offset;
                self.lex_digits();
                is_float = true;
            }
        }
        if self
            .peek_at(0)
            .is_some_and(|b| is_ident_char(b) || b == b'.')
        {
            while self
                .peek_at(0)
                .is_some_and(|b| is_ident_char(b) || matches!(b, b'.' | b'+' | b'-'))
            {
                self.pos += 1;
            }
            return error(
                start,
                format!(
                    "invalid number '{}' (numbers look like 42, -7, 1.5, -0.25 or 1e3; \
                     quote text values)",
                    self.text(start, self.pos)
                ),
            );
        }
        let text = self.text(start, self.pos);
        if is_float {
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(TokKind::Double(v)),
                _ => error(start, format!("number '{text}' is out of range")),
            }
        } else {
            match text.parse::<i64>() {
                Ok(v) => Ok(TokKind::Int(v)),
                Err(_) => error(
                    start,
                    format!(
                        "integer '{text}' is out of the 64-bit range; write it as a float (e.g. 1e20) \
                         if that is what you mean"
                    ),
                ),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

struct Parser<'a> {
    lexer: Lexer<'a>,
    input: &'a str,
    peeked: Option<Token>,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<&Token, FilterError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next_token()?);
        }
        match &self.peeked {
            Some(tok) => Ok(tok),
            None => error(self.lexer.pos, "internal error: missing token"),
        }
    }

    fn bump(&mut self) -> Result<Token, FilterError> {
        match self.peeked.take() {
            Some(tok) => Ok(tok),
            None => self.lexer.next_token(),
        }
    }

    fn peek_is_keyword(&mut self, keyword: &str) -> Result<bool, FilterError> {
        Ok(matches!(&self.peek()?.kind, TokKind::Word(w) if w.eq_ignore_ascii_case(keyword)))
    }

    fn source(&self, tok: &Token) -> &str {
        self.input.get(tok.pos..tok.end).unwrap_or("")
    }

    /// Human description of a token for error messages.
    fn describe(&self, tok: &Token) -> String {
        let src = self.source(tok);
        let shown = if src.len() > 40 {
            format!("{}...", src.get(..37).unwrap_or(src))
        } else {
            src.to_string()
        };
        match &tok.kind {
            TokKind::End => "the end of the query".to_string(),
            TokKind::Word(w) if is_keyword(w) => format!("keyword '{}'", w.to_ascii_uppercase()),
            TokKind::Word(_) => format!("name '{shown}'"),
            TokKind::BackName { .. } => format!("property name {shown}"),
            TokKind::Str(_) => format!("string {shown}"),
            TokKind::Int(_) | TokKind::Double(_) => format!("number {shown}"),
            TokKind::Op(_) | TokKind::LParen | TokKind::RParen | TokKind::Comma => {
                format!("'{shown}'")
            }
        }
    }

    fn parse_or(&mut self) -> Result<Node, FilterError> {
        let first = self.parse_and()?;
        let mut items = Vec::new();
        while self.peek_is_keyword("or")? {
            self.bump()?;
            items.push(self.parse_and()?);
        }
        if items.is_empty() {
            Ok(first)
        } else {
            items.insert(0, first);
            Ok(Node::Or(items))
        }
    }

    fn parse_and(&mut self) -> Result<Node, FilterError> {
        let first = self.parse_primary()?;
        let mut items = Vec::new();
        while self.peek_is_keyword("and")? {
            self.bump()?;
            items.push(self.parse_primary()?);
        }
        if items.is_empty() {
            Ok(first)
        } else {
            items.insert(0, first);
            Ok(Node::And(items))
        }
    }

    fn parse_primary(&mut self) -> Result<Node, FilterError> {
        if self.peek()?.kind != TokKind::LParen {
            return self.parse_condition();
        }
        let open = self.bump()?;
        self.depth += 1;
        if self.depth > MAX_NESTING_DEPTH {
            return error(
                open.pos,
                format!(
                    "parentheses are nested too deeply (the maximum is {MAX_NESTING_DEPTH} levels)"
                ),
            );
        }
        if self.peek()?.kind == TokKind::RParen {
            let close = self.bump()?;
            return error(
                close.pos,
                "empty parentheses '()'; expected a condition inside",
            );
        }
        let inner = self.parse_or()?;
        let close = self.bump()?;
        match close.kind {
            TokKind::RParen => {
                self.depth -= 1;
                Ok(inner)
            }
            TokKind::End => error(
                close.pos,
                format!("missing ')' to close the '(' at position {}", open.pos),
            ),
            _ => error(
                close.pos,
                format!(
                    "expected AND, OR or ')' (closing the '(' at position {}) but found {}",
                    open.pos,
                    self.describe(&close)
                ),
            ),
        }
    }

    fn parse_property(&mut self) -> Result<(Property, Token), FilterError> {
        let tok = self.bump()?;
        let prop = match &tok.kind {
            TokKind::BackName { name, value_type } => Property {
                name: name.clone(),
                value_type: *value_type,
            },
            TokKind::Word(w) if is_keyword(w) => {
                let hint = if w.eq_ignore_ascii_case("not") {
                    "; NOT is not supported: negate the comparison instead (e.g. != instead of =)"
                        .to_string()
                } else {
                    format!("; if this is a property name, backquote it: `{w}`")
                };
                return error(
                    tok.pos,
                    format!(
                        "expected a property name but found {}{hint}",
                        self.describe(&tok)
                    ),
                );
            }
            TokKind::Word(w) => match w.rsplit_once('.') {
                Some((base, suffix)) => match ValueType::from_suffix(suffix) {
                    Some(vt) => Property {
                        name: base.to_string(),
                        value_type: Some(vt),
                    },
                    None => Property {
                        name: w.clone(),
                        value_type: None,
                    },
                },
                None => Property {
                    name: w.clone(),
                    value_type: None,
                },
            },
            TokKind::End => {
                return error(
                    tok.pos,
                    "expected a condition (property operator value) but reached the end of the query",
                );
            }
            TokKind::Str(_) => {
                return error(
                    tok.pos,
                    format!(
                        "expected a property name but found {}; property names are not quoted \
                         (use backquotes for unusual names: `my-prop`)",
                        self.describe(&tok)
                    ),
                );
            }
            _ => {
                return error(
                    tok.pos,
                    format!("expected a property name but found {}", self.describe(&tok)),
                );
            }
        };
        Ok((prop, tok))
    }

    fn parse_condition(&mut self) -> Result<Node, FilterError> {
        let (prop, prop_tok) = self.parse_property()?;
        let prop_src = self.source(&prop_tok).to_string();
        let op_tok = self.bump()?;
        let test = match &op_tok.kind {
            TokKind::Op(op) => {
                let op = *op;
                let after = format!("'{}'", self.source(&op_tok));
                let (value, value_tok) = self.parse_value(&after)?;
                check_literal(&prop, &prop_src, op, &value, &value_tok, self)?;
                Test::Compare { op, value }
            }
            TokKind::Word(w)
                if w.eq_ignore_ascii_case("like") || w.eq_ignore_ascii_case("ilike") =>
            {
                let case_insensitive = w.eq_ignore_ascii_case("ilike");
                let keyword = w.to_ascii_uppercase();
                if let Some(vt) = prop.value_type.filter(|vt| *vt != ValueType::String) {
                    return error(
                        op_tok.pos,
                        format!(
                            "{keyword} only applies to strings, but '{prop_src}' selects {} custom property",
                            vt.description()
                        ),
                    );
                }
                let (value, value_tok) = self.parse_value(&keyword)?;
                let Scalar::Str(pattern) = value else {
                    return error(
                        value_tok.pos,
                        format!(
                            "{keyword} needs a quoted string pattern (e.g. name {keyword} 'abc%') \
                             but found {}",
                            self.describe(&value_tok)
                        ),
                    );
                };
                let len = pattern.chars().count();
                if len > MAX_LIKE_PATTERN_LEN {
                    return error(
                        value_tok.pos,
                        format!(
                            "the {keyword} pattern is too long ({len} characters; the maximum is \
                             {MAX_LIKE_PATTERN_LEN})"
                        ),
                    );
                }
                Test::Like {
                    compiled: compile_like(&pattern, case_insensitive),
                    pattern,
                    case_insensitive,
                }
            }
            TokKind::Word(w) if w.eq_ignore_ascii_case("in") => {
                Test::In(self.parse_in_list(&prop, &prop_src)?)
            }
            TokKind::End => {
                return error(
                    op_tok.pos,
                    format!(
                        "expected an operator (=, !=, <>, <, <=, >, >=, LIKE, ILIKE or IN) after \
                         '{prop_src}' but reached the end of the query"
                    ),
                );
            }
            _ => {
                return error(
                    op_tok.pos,
                    format!(
                        "expected an operator (=, !=, <>, <, <=, >, >=, LIKE, ILIKE or IN) after \
                         '{prop_src}' but found {}",
                        self.describe(&op_tok)
                    ),
                );
            }
        };
        Ok(Node::Cond(Condition { prop, test }))
    }

    fn parse_in_list(
        &mut self,
        prop: &Property,
        prop_src: &str,
    ) -> Result<Vec<Scalar>, FilterError> {
        let open = self.bump()?;
        if open.kind != TokKind::LParen {
            return error(
                open.pos,
                format!(
                    "expected '(' after IN (e.g. IN ('a', 'b')) but found {}",
                    self.describe(&open)
                ),
            );
        }
        if self.peek()?.kind == TokKind::RParen {
            let close = self.bump()?;
            return error(close.pos, "the IN list is empty; give at least one value");
        }
        let mut values = Vec::new();
        let mut after = "'IN ('".to_string();
        loop {
            let (value, value_tok) = self.parse_value(&after)?;
            check_literal(prop, prop_src, CmpOp::Eq, &value, &value_tok, self)?;
            values.push(value);
            let sep = self.bump()?;
            match sep.kind {
                TokKind::Comma => after = "',' in the IN list".to_string(),
                TokKind::RParen => return Ok(values),
                TokKind::End => {
                    return error(
                        sep.pos,
                        format!(
                            "missing ')' to close the IN list opened at position {}",
                            open.pos
                        ),
                    );
                }
                _ => {
                    return error(
                        sep.pos,
                        format!(
                            "expected ',' or ')' in the IN list but found {}",
                            self.describe(&sep)
                        ),
                    );
                }
            }
        }
    }

    fn parse_value(&mut self, after: &str) -> Result<(Scalar, Token), FilterError> {
        let tok = self.bump()?;
        let value = match &tok.kind {
            TokKind::Str(s) => Scalar::Str(s.clone()),
            TokKind::Int(i) => Scalar::Int(*i),
            TokKind::Double(d) => Scalar::Double(*d),
            TokKind::Word(w) if w.eq_ignore_ascii_case("true") => Scalar::Bool(true),
            TokKind::Word(w) if w.eq_ignore_ascii_case("false") => Scalar::Bool(false),
            TokKind::End => {
                return error(
                    tok.pos,
                    format!("expected a value after {after} but reached the end of the query"),
                );
            }
            TokKind::Word(w) if !is_keyword(w) => {
                return error(
                    tok.pos,
                    format!(
                        "expected a value after {after} but found name '{w}'; quote text values, \
                         e.g. '{w}'"
                    ),
                );
            }
            _ => {
                return error(
                    tok.pos,
                    format!(
                        "expected a value after {after} but found {}",
                        self.describe(&tok)
                    ),
                );
            }
        };
        Ok((value, tok))
    }
}

/// Checks that a literal fits the property's explicit type and the operator.
fn check_literal(
    prop: &Property,
    prop_src: &str,
    op: CmpOp,
    value: &Scalar,
    value_tok: &Token,
    parser: &Parser<'_>,
) -> Result<(), FilterError> {
    if matches!(value, Scalar::Bool(_)) && op.is_ordering() {
        return error(
            value_tok.pos,
            format!(
                "true/false can only be compared with =, != or <>, not with '{}'",
                op.symbol()
            ),
        );
    }
    let Some(vt) = prop.value_type else {
        return Ok(());
    };
    let (fits, expected) = match vt {
        ValueType::String => (matches!(value, Scalar::Str(_)), "a quoted string"),
        ValueType::Int | ValueType::Double => (
            matches!(value, Scalar::Int(_) | Scalar::Double(_)),
            "a number (unquoted, e.g. 42 or 0.5)",
        ),
        ValueType::Bool => (matches!(value, Scalar::Bool(_)), "true or false"),
    };
    if fits {
        return Ok(());
    }
    error(
        value_tok.pos,
        format!(
            "'{prop_src}' selects {} custom property, so it must be compared with {expected}, \
             but found {}",
            vt.description(),
            parser.describe(value_tok)
        ),
    )
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

impl Node {
    fn eval(&self, target: &dyn FilterTarget) -> bool {
        match self {
            Node::Or(items) => items.iter().any(|n| n.eval(target)),
            Node::And(items) => items.iter().all(|n| n.eval(target)),
            Node::Cond(cond) => cond.eval(target),
        }
    }

    fn cost_per_byte(&self) -> usize {
        match self {
            Node::Or(items) | Node::And(items) => items.iter().map(Node::cost_per_byte).sum(),
            Node::Cond(Condition {
                test: Test::Like { compiled, .. },
                ..
            }) => compiled.cost_per_byte(),
            Node::Cond(_) => 0,
        }
    }
}

impl Condition {
    fn eval(&self, target: &dyn FilterTarget) -> bool {
        let name = self.prop.name.as_str();
        let value = match self.prop.value_type {
            Some(vt) => match target.custom_property(name) {
                Some(v) if v.value_type() == vt => v,
                _ => return false,
            },
            None => match target.own_field(name) {
                Some(Some(v)) => v,
                Some(None) => return false,
                None => match target.custom_property(name) {
                    Some(v) => v,
                    None => return false,
                },
            },
        };
        match &self.test {
            Test::Compare { op, value: literal } => op.holds(compare(&value, literal)),
            Test::Like {
                compiled,
                case_insensitive,
                ..
            } => match &value {
                Scalar::Str(s) => like_match(compiled, s, *case_insensitive),
                _ => false,
            },
            Test::In(list) => list
                .iter()
                .any(|literal| CmpOp::Eq.holds(compare(&value, literal))),
        }
    }
}

/// Result of comparing an entity value with a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Totally ordered values (numbers, strings).
    Ordered(Ordering),
    /// Values with equality only (booleans).
    Equality(bool),
    /// Not comparable: every operator is false.
    Incomparable,
}

#[derive(Debug, Clone, Copy)]
enum Num {
    I(i64),
    F(f64),
}

fn parse_bool_text(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Parses text with the query's number syntax (`-?\d+(\.\d+)?([eE][+-]?\d+)?`).
fn parse_number_text(s: &str) -> Option<Num> {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if b.first() == Some(&b'-') {
        i += 1;
    }
    if !digits(&mut i) {
        return None;
    }
    let mut is_float = false;
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return None;
        }
        is_float = true;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
        is_float = true;
    }
    if i != b.len() {
        return None;
    }
    if !is_float && let Ok(v) = s.parse::<i64>() {
        return Some(Num::I(v));
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Some(Num::F(v)),
        _ => None,
    }
}

fn as_number(s: &Scalar) -> Option<Num> {
    match s {
        Scalar::Int(i) => Some(Num::I(*i)),
        Scalar::Double(d) => Some(Num::F(*d)),
        Scalar::Str(text) => parse_number_text(text),
        Scalar::Bool(_) => None,
    }
}

/// Exact comparison of an integer with a float (no precision loss); `None` for NaN.
fn cmp_int_float(i: i64, f: f64) -> Option<Ordering> {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() {
        return None;
    }
    if f >= TWO_POW_63 {
        return Some(Ordering::Less);
    }
    if f < -TWO_POW_63 {
        return Some(Ordering::Greater);
    }
    let t = f.trunc();
    // In range, so the conversion is exact.
    let ti = t as i64;
    match i.cmp(&ti) {
        Ordering::Equal => t.partial_cmp(&f),
        other => Some(other),
    }
}

fn cmp_num(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::I(x), Num::I(y)) => Some(x.cmp(&y)),
        (Num::F(x), Num::F(y)) => x.partial_cmp(&y),
        (Num::I(x), Num::F(y)) => cmp_int_float(x, y),
        (Num::F(x), Num::I(y)) => cmp_int_float(y, x).map(Ordering::reverse),
    }
}

/// Compares an entity value (left) with a query literal (right).
fn compare(value: &Scalar, literal: &Scalar) -> Outcome {
    match (value, literal) {
        (Scalar::Str(a), Scalar::Str(b)) => Outcome::Ordered(a.as_bytes().cmp(b.as_bytes())),
        (Scalar::Bool(a), Scalar::Bool(b)) => Outcome::Equality(a == b),
        (Scalar::Bool(a), Scalar::Str(s)) | (Scalar::Str(s), Scalar::Bool(a)) => {
            match parse_bool_text(s) {
                Some(b) => Outcome::Equality(*a == b),
                None => Outcome::Incomparable,
            }
        }
        (Scalar::Bool(_), _) | (_, Scalar::Bool(_)) => Outcome::Incomparable,
        _ => match (as_number(value), as_number(literal)) {
            (Some(a), Some(b)) => match cmp_num(a, b) {
                Some(ord) => Outcome::Ordered(ord),
                None => Outcome::Incomparable,
            },
            _ => Outcome::Incomparable,
        },
    }
}

// ---------------------------------------------------------------------------
// LIKE
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LikeTok {
    /// `%`: any sequence, possibly empty.
    Any,
    /// `_`: exactly one character.
    One,
    /// A literal character (already ASCII-lowercased for ILIKE).
    Lit(char),
}

fn fold(c: char, case_insensitive: bool) -> char {
    if case_insensitive {
        c.to_ascii_lowercase()
    } else {
        c
    }
}

/// A LIKE pattern compiled once, at parse time, for a match in time linear in the text.
///
/// Split on `%`, the pattern is a sequence of segments of fixed length in characters.
/// The segment before the first `%` must match at the start of the text, the one after
/// the last `%` at its end, and each segment in between is taken at its leftmost
/// occurrence after the previous one. Leftmost is always right: any match using a later
/// occurrence leaves less text to the remaining segments than the leftmost one does.
///
/// A backtracking matcher instead costs O(len(text) × len(pattern)) on patterns such as
/// `'%aaaa…ab'`, which let one request keep a server busy for minutes.
#[derive(Debug, Clone, PartialEq)]
struct LikePattern {
    /// The whole pattern, `%%` collapsed; the anchored segments are slices of it.
    tokens: Vec<LikeTok>,
    /// Indexes in `tokens` of the first and the last `%`; `None` when there is none.
    wildcards: Option<(usize, usize)>,
    /// The segments between the first and the last `%`, in order (never empty ones).
    middle: Vec<Segment>,
}

/// The tokens (as for the reference matcher of the tests); matching uses [`LikePattern::matches`].
impl std::ops::Deref for LikePattern {
    type Target = [LikeTok];

    fn deref(&self) -> &[LikeTok] {
        &self.tokens
    }
}

fn compile_like(pattern: &str, case_insensitive: bool) -> LikePattern {
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let tok = match c {
            '%' => {
                if tokens.last() == Some(&LikeTok::Any) {
                    continue;
                }
                LikeTok::Any
            }
            '_' => LikeTok::One,
            '\\' => match chars.next() {
                Some(next) => LikeTok::Lit(fold(next, case_insensitive)),
                None => LikeTok::Lit('\\'),
            },
            other => LikeTok::Lit(fold(other, case_insensitive)),
        };
        tokens.push(tok);
    }
    let first = tokens.iter().position(|t| *t == LikeTok::Any);
    let last = tokens.iter().rposition(|t| *t == LikeTok::Any);
    let wildcards = first.zip(last);
    let middle = match wildcards {
        Some((first, last)) if first < last => tokens[first + 1..last]
            .split(|t| *t == LikeTok::Any)
            .map(Segment::new)
            .collect(),
        _ => Vec::new(),
    };
    LikePattern {
        tokens,
        wildcards,
        middle,
    }
}

/// True when `text` matches the compiled pattern (`case_insensitive` as it was compiled).
fn like_match(pattern: &LikePattern, text: &str, case_insensitive: bool) -> bool {
    pattern.matches(text, case_insensitive)
}

impl LikePattern {
    fn matches(&self, text: &str, case_insensitive: bool) -> bool {
        let Some((first, last)) = self.wildcards else {
            return strip_head(&self.tokens, text, case_insensitive).is_some_and(str::is_empty);
        };
        // `str::find` cannot fold case: literal segments of an ILIKE search a lowercased
        // copy of the text, made only when it differs. Byte offsets are the same in both.
        let folded;
        let text = if case_insensitive
            && self.middle.iter().any(|s| matches!(s, Segment::Literal(_)))
            && text.bytes().any(|b| b.is_ascii_uppercase())
        {
            folded = text.to_ascii_lowercase();
            folded.as_str()
        } else {
            text
        };
        let Some(rest) = strip_head(&self.tokens[..first], text, case_insensitive) else {
            return false;
        };
        let Some(mut rest) = strip_tail(&self.tokens[last + 1..], rest, case_insensitive) else {
            return false;
        };
        for segment in &self.middle {
            match segment.after_leftmost(rest, case_insensitive) {
                Some(after) => rest = after,
                None => return false,
            }
        }
        true
    }

    /// Work units per byte of text, for [`Expr::cost_per_byte`]: one for the scan,
    /// plus the 64-bit words of the widest Shift-And state.
    fn cost_per_byte(&self) -> usize {
        let widest = self.middle.iter().map(Segment::words).max().unwrap_or(0);
        1 + widest
    }
}

/// The text after `segment` when the text starts with it.
fn strip_head<'t>(segment: &[LikeTok], text: &'t str, case_insensitive: bool) -> Option<&'t str> {
    let mut chars = text.chars();
    for tok in segment {
        let c = fold(chars.next()?, case_insensitive);
        if matches!(tok, LikeTok::Lit(want) if *want != c) {
            return None;
        }
    }
    Some(chars.as_str())
}

/// The text before `segment` when the text ends with it.
fn strip_tail<'t>(segment: &[LikeTok], text: &'t str, case_insensitive: bool) -> Option<&'t str> {
    let mut chars = text.chars();
    for tok in segment.iter().rev() {
        let c = fold(chars.next_back()?, case_insensitive);
        if matches!(tok, LikeTok::Lit(want) if *want != c) {
            return None;
        }
    }
    Some(chars.as_str())
}

/// A segment between two `%`, with the search that suits its shape.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    /// Only `_`: its leftmost occurrence is simply the next that many characters.
    AnyChars(usize),
    /// No `_`: `str::find` (Two-Way, linear in the text even in the worst case).
    Literal(String),
    /// Both literals and `_`: bit-parallel Shift-And over characters.
    Mixed(ShiftAnd),
}

impl Segment {
    /// `tokens`: a non-empty run of literals and `_` (no `%`).
    fn new(tokens: &[LikeTok]) -> Segment {
        if tokens.iter().all(|t| *t == LikeTok::One) {
            return Segment::AnyChars(tokens.len());
        }
        let literal: Option<String> = tokens
            .iter()
            .map(|t| match t {
                LikeTok::Lit(c) => Some(*c),
                _ => None,
            })
            .collect();
        match literal {
            Some(literal) => Segment::Literal(literal),
            None => Segment::Mixed(ShiftAnd::new(tokens)),
        }
    }

    /// The text after the leftmost occurrence of the segment, if there is one.
    ///
    /// For [`Segment::Literal`] in an ILIKE, `text` must already be ASCII-lowercased.
    fn after_leftmost<'t>(&self, text: &'t str, case_insensitive: bool) -> Option<&'t str> {
        match self {
            Segment::AnyChars(n) => {
                let mut chars = text.chars();
                for _ in 0..*n {
                    chars.next()?;
                }
                Some(chars.as_str())
            }
            Segment::Literal(needle) => text
                .find(needle.as_str())
                .map(|start| &text[start + needle.len()..]),
            Segment::Mixed(shift_and) => shift_and.after_leftmost(text, case_insensitive),
        }
    }

    /// 64-bit words of Shift-And state updated per character (0 for the other searches).
    fn words(&self) -> usize {
        match self {
            Segment::Mixed(shift_and) => shift_and.words,
            Segment::AnyChars(_) | Segment::Literal(_) => 0,
        }
    }
}

/// Shift-And (bitap) search of a fixed-length segment in O(len(text) × ⌈len/64⌉).
///
/// Bit `j` of the state is set when the last `j + 1` characters of the text match the
/// first `j + 1` positions of the segment; the state is `words` 64-bit words long.
#[derive(Debug, Clone, PartialEq)]
struct ShiftAnd {
    /// Length of the segment, in characters (at least 1).
    len: usize,
    /// `len` divided by 64, rounded up.
    words: usize,
    /// The distinct literal characters of the segment, sorted; `alphabet[i]` owns row
    /// `i + 1` of `masks`.
    alphabet: Vec<char>,
    /// One row of `words` words per character class: bit `j` is set when position `j`
    /// accepts it. Row 0 is for characters not in `alphabet` (the `_` positions only).
    masks: Vec<u64>,
}

impl ShiftAnd {
    fn new(tokens: &[LikeTok]) -> ShiftAnd {
        let len = tokens.len();
        let words = len.div_ceil(64);
        let mut alphabet: Vec<char> = tokens
            .iter()
            .filter_map(|t| match t {
                LikeTok::Lit(c) => Some(*c),
                _ => None,
            })
            .collect();
        alphabet.sort_unstable();
        alphabet.dedup();
        let mut masks = vec![0u64; (alphabet.len() + 1) * words];
        for (j, tok) in tokens.iter().enumerate() {
            let bit = 1u64 << (j % 64);
            match tok {
                LikeTok::Lit(c) => {
                    if let Ok(i) = alphabet.binary_search(c) {
                        masks[(i + 1) * words + j / 64] |= bit;
                    }
                }
                // `_` accepts every character: set its bit in every row.
                _ => {
                    for row in masks.chunks_exact_mut(words) {
                        row[j / 64] |= bit;
                    }
                }
            }
        }
        ShiftAnd {
            len,
            words,
            alphabet,
            masks,
        }
    }

    fn after_leftmost<'t>(&self, text: &'t str, case_insensitive: bool) -> Option<&'t str> {
        let words = self.words;
        let (last_word, last_bit) = ((self.len - 1) / 64, 1u64 << ((self.len - 1) % 64));
        let mut state = vec![0u64; words];
        for (at, c) in text.char_indices() {
            let row = self
                .alphabet
                .binary_search(&fold(c, case_insensitive))
                .map_or(0, |i| i + 1);
            let mask = &self.masks[row * words..(row + 1) * words];
            // Shift the whole state left by one bit, entering a 1 (a match may start here).
            let mut carry = 1u64;
            for (word, accepts) in state.iter_mut().zip(mask) {
                let out = *word >> 63;
                *word = ((*word << 1) | carry) & accepts;
                carry = out;
            }
            if state[last_word] & last_bit != 0 {
                // Occurrences all have the same length: the first to end is the leftmost.
                return Some(&text[at + c.len_utf8()..]);
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------
// Display (canonical query text)
// ---------------------------------------------------------------------------

impl fmt::Display for Expr {
    /// Canonical query text; parsing it gives back an equal `Expr`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_node(&self.root, f, None)
    }
}

/// `parent`: `Some(true)` inside an OR, `Some(false)` inside an AND, `None` at the top.
/// Parentheses are written exactly where the parser needs them to rebuild the same tree.
fn fmt_node(node: &Node, f: &mut fmt::Formatter<'_>, parent: Option<bool>) -> fmt::Result {
    let (items, is_or) = match node {
        Node::Or(items) => (items, true),
        Node::And(items) => (items, false),
        Node::Cond(cond) => return fmt_condition(cond, f),
    };
    // An AND directly inside an OR needs no parentheses (AND binds tighter).
    let parens = match parent {
        None => false,
        Some(parent_is_or) => is_or || !parent_is_or,
    };
    if parens {
        f.write_str("(")?;
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(if is_or { " OR " } else { " AND " })?;
        }
        fmt_node(item, f, Some(is_or))?;
    }
    if parens {
        f.write_str(")")?;
    }
    Ok(())
}

fn fmt_condition(cond: &Condition, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    fmt_property(&cond.prop, f)?;
    match &cond.test {
        Test::Compare { op, value } => {
            write!(f, " {} ", op.symbol())?;
            fmt_scalar(value, f)
        }
        Test::Like {
            pattern,
            case_insensitive,
            ..
        } => {
            f.write_str(if *case_insensitive {
                " ILIKE "
            } else {
                " LIKE "
            })?;
            fmt_scalar(&Scalar::Str(pattern.clone()), f)
        }
        Test::In(values) => {
            f.write_str(" IN (")?;
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                fmt_scalar(value, f)?;
            }
            f.write_str(")")
        }
    }
}

fn fmt_property(prop: &Property, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let name = prop.name.as_str();
    let plain_path = !name.is_empty() && name.split('.').all(is_ident);
    let plain = plain_path
        && match prop.value_type {
            Some(_) => true,
            None => {
                !is_keyword(name)
                    && name
                        .rsplit_once('.')
                        .is_none_or(|(_, last)| ValueType::from_suffix(last).is_none())
            }
        };
    if plain {
        f.write_str(name)?;
    } else {
        write!(f, "`{}`", name.replace('`', "``"))?;
    }
    if let Some(vt) = prop.value_type {
        write!(f, ".{}", vt.suffix())?;
    }
    Ok(())
}

fn fmt_scalar(value: &Scalar, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match value {
        Scalar::Str(s) => write!(f, "'{}'", s.replace('\\', "\\\\").replace('\'', "''")),
        Scalar::Int(i) => write!(f, "{i}"),
        // Debug keeps a '.' or exponent and round-trips exactly.
        Scalar::Double(d) => write!(f, "{d:?}"),
        Scalar::Bool(b) => write!(f, "{b}"),
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A small entity: own fields `name`, `id`, `state`, `externalId` (unset), `uri`,
    /// plus custom properties.
    #[derive(Debug, Clone, Default)]
    struct Entity {
        own: Vec<(&'static str, Option<Scalar>)>,
        custom: Vec<(String, Scalar)>,
    }

    impl FilterTarget for Entity {
        fn own_field(&self, name: &str) -> Option<Option<Scalar>> {
            self.own
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        }
        fn custom_property(&self, name: &str) -> Option<Scalar> {
            self.custom
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn s(v: &str) -> Scalar {
        Scalar::Str(v.to_string())
    }

    fn model() -> Entity {
        Entity {
            own: vec![
                ("name", Some(s("mnist-v1"))),
                ("id", Some(Scalar::Int(5))),
                ("state", Some(s("LIVE"))),
                ("externalId", None),
                ("uri", Some(s("s3://bucket/50%_off"))),
                ("createTimeSinceEpoch", Some(Scalar::Int(1_700_000_000_000))),
            ],
            custom: vec![
                ("accuracy".into(), Scalar::Double(0.93)),
                ("epochs".into(), Scalar::Int(10)),
                ("tag".into(), s("prod")),
                ("flag".into(), Scalar::Bool(true)),
                ("my-prop.with.dots".into(), s("x")),
                ("foo.bar".into(), Scalar::Int(3)),
                ("name".into(), s("custom-name")),
                ("nan".into(), Scalar::Double(f64::NAN)),
                ("numstr".into(), s("42")),
                ("a.b".into(), Scalar::Double(1.5)),
                ("in".into(), Scalar::Int(1)),
                ("quote's".into(), s("it's \"here\"")),
                ("flagstr".into(), s("TRUE")),
                ("big".into(), Scalar::Int(i64::MAX)),
                ("unicode".into(), s("héllo")),
            ],
        }
    }

    #[track_caller]
    fn m(query: &str) -> bool {
        match parse(query) {
            Ok(expr) => expr.matches(&model()),
            Err(e) => panic!("{query:?} should parse but: {e}"),
        }
    }

    #[track_caller]
    fn err(query: &str) -> FilterError {
        match parse(query) {
            Ok(expr) => panic!("{query:?} should fail but parsed to {expr:?}"),
            Err(e) => e,
        }
    }

    #[track_caller]
    fn err_at(query: &str, position: usize, fragment: &str) {
        let e = err(query);
        assert_eq!(e.position, position, "{query:?}: {e}");
        assert!(
            e.message.contains(fragment),
            "{query:?}: message {:?} lacks {fragment:?}",
            e.message
        );
    }

    // ----- operators -----------------------------------------------------

    #[test]
    fn equality_operators() {
        assert!(m("name = 'mnist-v1'"));
        assert!(!m("name = 'mnist'"));
        assert!(m("name != 'mnist'"));
        assert!(!m("name != 'mnist-v1'"));
        assert!(m("name <> 'mnist'"));
        assert!(!m("name <> 'mnist-v1'"));
    }

    #[test]
    fn ordering_operators() {
        assert!(m("epochs < 11"));
        assert!(!m("epochs < 10"));
        assert!(m("epochs <= 10"));
        assert!(!m("epochs <= 9"));
        assert!(m("epochs > 9"));
        assert!(!m("epochs > 10"));
        assert!(m("epochs >= 10"));
        assert!(!m("epochs >= 11"));
        assert!(m("name > 'mnist'"));
        assert!(m("name < 'mnist-v2'"));
        assert!(m("state >= 'LIVE'") && !m("state > 'LIVE'"));
        // Byte order: uppercase sorts before lowercase.
        assert!(m("state < 'live'"));
    }

    #[test]
    fn operators_without_spaces() {
        assert!(m("epochs>=10"));
        assert!(m("epochs<>9"));
        assert!(m("epochs!=-1"));
        assert!(m("epochs>-1"));
        assert!(m("name='mnist-v1'AND(epochs=10)"));
    }

    #[test]
    fn like_and_ilike() {
        assert!(m("name LIKE 'mnist%'"));
        assert!(m("name LIKE '%v1'"));
        assert!(m("name LIKE '%ist%'"));
        assert!(m("name LIKE 'mnist-v_'"));
        assert!(!m("name LIKE 'mnist-v__'"));
        assert!(!m("name LIKE 'MNIST%'"));
        assert!(m("name ILIKE 'MNIST%'"));
        assert!(m("name ilike 'Mnist-V1'"));
        assert!(m("name LIKE 'mnist-v1'"));
        assert!(!m("name LIKE 'mnist-v'"));
        assert!(m("name LIKE '%'"));
        assert!(m("name LIKE '%%%'"));
        // `_` is one character, not one byte.
        assert!(m("unicode LIKE 'h_llo'"));
        // Escaped wildcards are literal.
        assert!(m(r"uri LIKE '%50\%\_off'"));
        assert!(!m(r"name LIKE 'mnist\%'"));
        // LIKE applies to strings only.
        assert!(!m("epochs LIKE '1%'"));
        assert!(!m("id LIKE '5'"));
        assert!(!m("missing LIKE '%'"));
    }

    #[test]
    fn in_lists() {
        assert!(m("state IN ('LIVE', 'ARCHIVED')"));
        assert!(!m("state IN ('ARCHIVED')"));
        assert!(m("epochs IN (1, 2, 10)"));
        assert!(m("epochs IN (10.0)"));
        assert!(m("accuracy in (0.5, 0.93)"));
        assert!(m("id IN ('5', 6)"));
        assert!(m("flag IN (false, true)"));
        assert!(m("tag IN ('x', 5, true, 'prod')"));
        assert!(!m("missing IN ('x', 'prod')"));
        assert!(m("state IN('LIVE')"));
    }

    // ----- structure -----------------------------------------------------

    #[test]
    fn precedence_and_binds_tighter() {
        // a OR b AND c == a OR (b AND c)
        assert!(m("tag = 'prod' OR epochs = 1 AND epochs = 2"));
        assert!(!m("(tag = 'prod' OR epochs = 1) AND epochs = 2"));
        assert!(m("epochs = 1 AND epochs = 2 OR tag = 'prod'"));
        assert!(!m("epochs = 1 AND (epochs = 2 OR tag = 'prod')"));
        let a = parse("a = 1 OR b = 2 AND c = 3").ok();
        let b = parse("a = 1 OR (b = 2 AND c = 3)").ok();
        assert!(a.is_some());
        assert_eq!(a, b);
    }

    #[test]
    fn parentheses() {
        assert!(m("((name = 'mnist-v1'))"));
        assert!(m(
            "(epochs = 1 OR epochs = 10) AND (tag = 'prod' OR tag = 'dev')"
        ));
        assert!(!m(
            "(epochs = 1 OR epochs = 2) AND (tag = 'prod' OR tag = 'dev')"
        ));
        assert!(m("( \t\n epochs = 10\r\n)"));
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert!(m("tag = 'prod' and epochs = 10"));
        assert!(m("tag = 'prod' AnD epochs = 10"));
        assert!(m("tag = 'x' or epochs = 10"));
        assert!(m("tag = 'x' oR epochs = 10"));
        assert!(m("name like 'mn%'"));
        assert!(m("name LiKe 'mn%'"));
        assert!(m("name iLIKE 'MN%'"));
        assert!(m("tag In ('prod')"));
        assert!(m("flag = TRUE"));
        assert!(m("flag != FALSE"));
        assert!(m("flag = True"));
    }

    #[test]
    fn quotes_and_escapes() {
        assert!(m("name = \"mnist-v1\""));
        assert!(m("`quote's` = 'it''s \"here\"'"));
        assert!(m(r#"`quote's` = 'it\'s "here"'"#));
        assert!(m(r#"`quote's` = "it's \"here\"""#));
        assert!(m(r#"`quote's` = "it's ""here""""#));
        assert!(m("tag = 'prod' AND name != ''"));
        let expr = parse(r"x = 'a\\b\nc'").ok();
        let expected = Expr {
            root: Node::Cond(Condition {
                prop: Property {
                    name: "x".into(),
                    value_type: None,
                },
                test: Test::Compare {
                    op: CmpOp::Eq,
                    value: s(r"a\b\nc"),
                },
            }),
        };
        assert_eq!(expr, Some(expected));
    }

    #[test]
    fn numbers() {
        assert!(m("epochs > -5"));
        assert!(m("accuracy > 0.9"));
        assert!(m("accuracy < 1"));
        assert!(m("accuracy > -0.25"));
        assert!(m("epochs = 1e1"));
        assert!(m("epochs = 1.0E+1"));
        assert!(m("accuracy = 93e-2"));
        assert!(m("createTimeSinceEpoch > 1e12"));
        assert!(m("big = 9223372036854775807"));
        // i64::MAX is not 2^63 even though (i64::MAX as f64) == 2^63.
        assert!(!m("big = 9.223372036854775808e18"));
        assert!(m("big < 9.223372036854775808e18"));
        assert!(m("foo.bar = -0 OR foo.bar = 3"));
        let e = parse("x = -9223372036854775808").ok();
        assert!(e.is_some());
    }

    #[test]
    fn backquoted_names() {
        assert!(m("`my-prop.with.dots` = 'x'"));
        assert!(m("`foo.bar` = 3"));
        assert!(m("`foo.bar`.int_value = 3"));
        assert!(m("`a.b`.double_value = 1.5"));
        assert!(m("`in` = 1"));
        assert!(m("`name` = 'mnist-v1'"));
        assert!(!m("`my-prop` = 'x'"));
        let expr = parse("`we``ird name` = 1").ok();
        let expected = Expr {
            root: Node::Cond(Condition {
                prop: Property {
                    name: "we`ird name".into(),
                    value_type: None,
                },
                test: Test::Compare {
                    op: CmpOp::Eq,
                    value: Scalar::Int(1),
                },
            }),
        };
        assert_eq!(expr, Some(expected));
    }

    #[test]
    fn dotted_names_without_suffix_are_custom_properties() {
        assert!(m("foo.bar = 3"));
        assert!(m("a.b > 1"));
        assert!(!m("foo.baz = 3"));
    }

    #[test]
    fn type_suffixes() {
        assert!(m("tag.string_value = 'prod'"));
        assert!(m("epochs.int_value = 10"));
        assert!(m("accuracy.double_value > 0.9"));
        assert!(m("flag.bool_value = true"));
        assert!(m("flag.bool_value <> false"));
        // Only a value of exactly that type matches.
        assert!(!m("epochs.double_value = 10"));
        assert!(!m("accuracy.int_value > 0"));
        assert!(!m("numstr.int_value = 42"));
        assert!(m("numstr = 42"));
        assert!(!m("flagstr.bool_value = true"));
        assert!(!m("tag.int_value != 1"));
        // double_value with an int literal, int_value with a float literal.
        assert!(m("a.b.double_value > 1"));
        assert!(m("epochs.int_value < 10.5"));
        assert!(m("epochs.int_value = 10.0"));
        // A suffix always means a custom property: the own `name` field is shadowed.
        assert!(m("name.string_value = 'custom-name'"));
        assert!(m("name = 'mnist-v1'"));
        assert!(!m("id.int_value = 5"));
        assert!(m("tag.string_value LIKE 'pr%'"));
        assert!(m("epochs.int_value IN (3, 10)"));
    }

    #[test]
    fn own_fields_versus_custom_properties() {
        assert!(m("id = 5"));
        assert!(m("id = '5'"));
        assert!(m("id = 5.0"));
        assert!(m("id >= '4'"));
        assert!(!m("id = 'five'"));
        assert!(!m("id != 'five'"));
        // Unset own field: false for all operators, even though a custom one may exist.
        assert!(!m("externalId = 'x'"));
        assert!(!m("externalId != 'x'"));
        assert!(!m("externalId LIKE '%'"));
        assert!(!m("externalId IN ('x')"));
    }

    #[test]
    fn int_literal_matches_double_value() {
        let e = Entity {
            own: vec![],
            custom: vec![("d".into(), Scalar::Double(3.0))],
        };
        let expr = parse("d = 3");
        assert!(expr.as_ref().is_ok_and(|x| x.matches(&e)));
        assert!(parse("d.double_value = 3").is_ok_and(|x| x.matches(&e)));
        assert!(parse("d IN (1, 3)").is_ok_and(|x| x.matches(&e)));
        assert!(parse("d < 4").is_ok_and(|x| x.matches(&e)));
        assert!(!parse("d = 4").is_ok_and(|x| x.matches(&e)));
    }

    #[test]
    fn missing_property_is_false_for_every_operator() {
        for op in ["=", "!=", "<>", "<", "<=", ">", ">="] {
            assert!(!m(&format!("missing {op} 1")), "{op}");
            assert!(!m(&format!("missing {op} 'a'")), "{op}");
            assert!(!m(&format!("missing.int_value {op} 1")), "{op}");
        }
        assert!(!m("missing LIKE '%'"));
        assert!(!m("missing ILIKE '%'"));
        assert!(!m("missing IN (1, 'a')"));
        assert!(m("missing = 1 OR tag = 'prod'"));
    }

    #[test]
    fn mixed_types() {
        assert!(m("numstr = 42"));
        assert!(m("numstr > 41.5"));
        assert!(m("numstr = '42'"));
        assert!(!m("tag = 5"));
        assert!(!m("tag != 5"));
        assert!(!m("tag < 5"));
        // Bool versus 'true'/'false' strings.
        assert!(m("flag = 'true'"));
        assert!(m("flag = 'TRUE'"));
        assert!(m("flag != 'false'"));
        assert!(!m("flag = 'yes'"));
        assert!(!m("flag != 'yes'"));
        assert!(m("flagstr = true"));
        assert!(!m("flag = 1"));
        assert!(!m("flag != 1"));
        assert!(!m("flag > 'false'"));
        // Strings compare lexicographically even when numeric.
        assert!(m("numstr < '5'"));
    }

    #[test]
    fn nan_compares_false() {
        for op in ["=", "!=", "<", "<=", ">", ">="] {
            assert!(!m(&format!("nan {op} 1")), "{op}");
            assert!(!m(&format!("nan {op} 1.5")), "{op}");
            assert!(!m(&format!("nan.double_value {op} 0")), "{op}");
        }
        assert!(!m("nan IN (1, 2.5)"));
    }

    #[test]
    fn display_is_canonical() {
        let expr =
            parse("a=1 or B.int_value>=2 AND (`x y` like 'p%' OR `or` IN (true, 'q''s', -1.5))");
        let text = expr.as_ref().map(ToString::to_string).unwrap_or_default();
        assert_eq!(
            text,
            "a = 1 OR B.int_value >= 2 AND (`x y` LIKE 'p%' OR `or` IN (true, 'q''s', -1.5))"
        );
        assert_eq!(parse(&text), expr);
        let from_str: Result<Expr, _> = text.parse();
        assert_eq!(from_str, expr);
        let suffix_name = parse("`x.int_value` = 1").map(|e| e.to_string());
        assert_eq!(suffix_name.as_deref(), Ok("`x.int_value` = 1"));
    }

    // ----- errors ----------------------------------------------------------

    #[test]
    fn error_empty_and_whitespace() {
        err_at("", 0, "empty");
        err_at("   \t\n", 0, "empty");
    }

    #[test]
    fn error_missing_value() {
        err_at("name = ", 7, "expected a value after '='");
        err_at("name =", 6, "end of the query");
        err_at("name = AND x = 1", 7, "expected a value after '='");
        err_at("name = )", 7, "found ')'");
        err_at("name = mnist", 7, "quote text values");
        err_at("name LIKE", 9, "expected a value after LIKE");
    }

    #[test]
    fn error_missing_or_unknown_operator() {
        err_at("name", 4, "expected an operator");
        err_at("name 'x'", 5, "expected an operator");
        err_at("name == 'x'", 5, "unknown operator '=='");
        err_at("name =< 1", 5, "unknown operator '=<'");
        err_at("name ! 1", 5, "unknown operator '!'");
        err_at("name IS 'x'", 5, "expected an operator");
        err_at("name ~ 'x'", 5, "unexpected character '~'");
    }

    #[test]
    fn error_unclosed_string() {
        err_at(
            "name = 'abc",
            7,
            "unclosed string literal starting at position 7",
        );
        err_at("name = \"abc'", 7, "unclosed string literal");
        err_at("x = 'it''", 4, "unclosed string");
        err_at(r"x = 'abc\'", 4, "unclosed string");
        err_at("`abc = 1", 0, "unclosed backquoted");
    }

    #[test]
    fn error_parentheses() {
        err_at("(name = 'x'", 11, "missing ')'");
        err_at("name = 'x')", 10, "unmatched ')'");
        err_at(
            "((name = 'x')",
            13,
            "missing ')' to close the '(' at position 0",
        );
        err_at("()", 1, "empty parentheses");
        err_at("(a = 1 b = 2)", 7, "expected AND, OR or ')'");
        err_at(")", 0, "expected a property name");
    }

    #[test]
    fn error_trailing_garbage() {
        err_at("name = 'x' extra", 11, "expected AND, OR or the end");
        err_at("name = 'x' 'y'", 11, "expected AND, OR or the end");
        err_at("name = 'x' AND", 14, "end of the query");
        err_at(
            "name = 'x' OR OR y = 1",
            14,
            "expected a property name but found keyword 'OR'",
        );
        err_at("AND name = 'x'", 0, "keyword 'AND'");
        err_at("name = 'x',", 10, "expected AND, OR or the end");
    }

    #[test]
    fn error_like_needs_string() {
        err_at("name LIKE 5", 10, "quoted string pattern");
        err_at("name ILIKE true", 11, "quoted string pattern");
        err_at("x.int_value LIKE '5%'", 12, "only applies to strings");
        err_at("name LIKE ('a')", 10, "expected a value after LIKE");
    }

    #[test]
    fn error_in_lists() {
        err_at("x IN ()", 6, "IN list is empty");
        err_at("x IN 'a'", 5, "expected '(' after IN");
        err_at("x IN ('a',)", 10, "expected a value after ','");
        err_at("x IN ('a' 'b')", 10, "expected ',' or ')'");
        err_at("x IN ('a'", 9, "missing ')' to close the IN list");
        err_at(
            "x.int_value IN (1, 'a')",
            19,
            "must be compared with a number",
        );
    }

    #[test]
    fn error_suffix_type_mismatch() {
        err_at("x.int_value = 'abc'", 14, "must be compared with a number");
        err_at(
            "x.double_value = true",
            17,
            "must be compared with a number",
        );
        err_at("x.string_value = 5", 17, "quoted string");
        err_at("x.bool_value = 'true'", 15, "true or false");
        err_at(
            "x.bool_value < true",
            15,
            "only be compared with =, != or <>",
        );
        err_at("flag >= false", 8, "only be compared with =, != or <>");
        err_at(
            "`a`.float_value = 1",
            3,
            "unknown type suffix '.float_value'",
        );
        err_at("`a`.int_value.x = 1", 13, "nothing may follow");
        err_at("`a`. = 1", 3, "unknown type suffix");
    }

    #[test]
    fn error_bad_names_and_numbers() {
        err_at("foo. = 1", 3, "must be followed by a name part");
        err_at("foo.1 = 1", 3, "must be followed by a name part");
        err_at(".5 = 1", 0, "unexpected '.'");
        err_at("'name' = 'x'", 0, "property names are not quoted");
        err_at("5 = 5", 0, "expected a property name");
        err_at("`` = 1", 0, "empty backquoted");
        err_at("in = 1", 0, "backquote it");
        err_at("NOT name = 'x'", 0, "NOT is not supported");
        err_at("x = 1.", 4, "invalid number");
        err_at("x = 1.5.2", 4, "invalid number '1.5.2'");
        err_at("x = 12abc", 4, "invalid number '12abc'");
        err_at("x = 1e", 4, "invalid number '1e'");
        err_at("x = - 1", 4, "'-' must be directly followed");
        err_at("x = 99999999999999999999", 4, "out of the 64-bit range");
        err_at("x = 1e999", 4, "out of range");
    }

    #[test]
    fn error_charset_and_limits() {
        err_at(
            "name = 'caf\u{e9}'",
            11,
            "non-ASCII character '\u{e9}' (U+00E9)",
        );
        err_at("name = \u{2018}x\u{2019}", 7, "non-ASCII");
        err_at("name = 'a\u{7}'", 9, "control character 0x07");
        err_at("name\u{0} = 1", 4, "control character 0x00");
        err_at("x = 'a\u{7f}'", 6, "control character 0x7F");
        let long = format!("x = '{}'", "a".repeat(MAX_QUERY_LEN));
        err_at(&long, MAX_QUERY_LEN, "too long");
        let deep_ok = format!("{}x = 1{}", "(".repeat(64), ")".repeat(64));
        assert!(parse(&deep_ok).is_ok());
        let deep = format!("{}x = 1{}", "(".repeat(65), ")".repeat(65));
        err_at(&deep, 64, "nested too deeply");
        let very_deep = "(".repeat(MAX_QUERY_LEN);
        err_at(&very_deep, 64, "nested too deeply");
        // A long flat chain is fine (no recursion per operand).
        let chain = vec!["x = 1"; 400].join(" OR ");
        assert!(parse(&chain).is_ok());
    }

    #[test]
    fn error_display_includes_position() {
        let e = err("name = ");
        assert_eq!(
            e.to_string(),
            "invalid filterQuery at position 7: expected a value after '=' but reached the end of the query"
        );
    }

    #[test]
    fn like_matcher_edge_cases() {
        let lm = |p: &str, t: &str| like_match(&compile_like(p, false), t, false);
        assert!(lm("", ""));
        assert!(!lm("", "a"));
        assert!(lm("%", ""));
        assert!(!lm("_", ""));
        assert!(lm("a%b%c", "aXXbYYc"));
        assert!(lm("a%b%c", "abc"));
        assert!(!lm("a%b%c", "acb"));
        assert!(lm("%a%a%a%a%b", &format!("{}b", "a".repeat(50))));
        assert!(!lm("%a%a%a%a%a%b", &"a".repeat(5000)));
        assert!(lm(r"\\", r"\"));
        assert!(lm("a\\", "a\\"));
        assert!(like_match(&compile_like("AbC%", true), "aBc-d", true));
    }

    #[test]
    fn like_pattern_length_is_limited() {
        // The pattern of the attack ('%', 4,000 'a', 'b') fits in a query, not in a pattern.
        let attack = format!("description LIKE '%{}b'", "a".repeat(4000));
        assert!(attack.len() <= MAX_QUERY_LEN);
        err_at(
            &attack,
            17,
            "the LIKE pattern is too long (4002 characters; the maximum is 1024)",
        );
        let longest = format!("name ILIKE '{}'", "_".repeat(MAX_LIKE_PATTERN_LEN));
        assert!(parse(&longest).is_ok());
        let too_long = format!("name ILIKE '{}'", "_".repeat(MAX_LIKE_PATTERN_LEN + 1));
        err_at(
            &too_long,
            11,
            "the ILIKE pattern is too long (1025 characters",
        );
        // Characters of the pattern, after the string's own escapes ('' is one quote).
        let quotes = format!("name LIKE '{}'", "''".repeat(MAX_LIKE_PATTERN_LEN));
        assert!(parse(&quotes).is_ok());
    }

    #[test]
    fn like_attack_patterns_finish() {
        let lower = Entity {
            own: vec![],
            custom: vec![("description".into(), s(&"a".repeat(400_000)))],
        };
        let upper = Entity {
            own: vec![],
            custom: vec![("description".into(), s(&"A".repeat(400_000)))],
        };
        let a998 = "a".repeat(998);
        let upper_a998 = "A".repeat(998);
        let a_pairs = "a_".repeat(499);
        let a_250 = "a_".repeat(250);
        // (query, matches 400,000 'a', matches 400,000 'A')
        let cases = [
            (format!("description LIKE '%{a998}b'"), false, false),
            (format!("description LIKE '%{a998}b%'"), false, false),
            (format!("description LIKE '%{a998}%b%'"), false, false),
            (format!("description ILIKE '%{upper_a998}B'"), false, false),
            (format!("description ILIKE '%{a998}b%'"), false, false),
            (format!("description LIKE '%{a_pairs}b'"), false, false),
            (format!("description LIKE '%{a_pairs}b%'"), false, false),
            (format!("description ILIKE '%{a_pairs}%b%'"), false, false),
            (format!("description LIKE '%{a_pairs}%'"), true, false),
            (format!("description ILIKE '%{a_pairs}%'"), true, true),
            (format!("description ILIKE '%a%{upper_a998}%'"), true, true),
            (format!("description LIKE '{a_250}%{a_250}'"), true, false),
        ];
        for (query, on_lower, on_upper) in cases {
            assert!(query.len() < MAX_QUERY_LEN);
            let expr = parse(&query).unwrap_or_else(|e| panic!("{query}: {e}"));
            assert_eq!(expr.matches(&lower), on_lower, "{query} on 'a…'");
            assert_eq!(expr.matches(&upper), on_upper, "{query} on 'A…'");
        }
    }

    #[test]
    fn like_long_segments_use_multi_word_shift_and() {
        let pattern = format!("%{}b%", "a_".repeat(40));
        let compiled = compile_like(&pattern, false);
        assert!(matches!(&compiled.middle[..], [Segment::Mixed(sa)] if sa.words == 2));
        for text in [
            format!("{}b", "a".repeat(1000)),
            format!("{}b{}", "a".repeat(79), "a".repeat(100)),
            format!("{}b", "a".repeat(79)),
            format!("{}b", "a".repeat(80)),
            format!("x{}b", "ay".repeat(40)),
            format!("x{}b", "ay".repeat(39)),
            format!("{}b", "\u{e9}a".repeat(40)),
            format!("{}b", "a\u{e9}".repeat(40)),
        ] {
            let expected = like_reference_text(&pattern, &text, false);
            assert_eq!(like_match(&compiled, &text, false), expected, "{text}");
        }
        assert!(like_match(
            &compiled,
            &format!("{}b", "a".repeat(80)),
            false
        ));
        assert!(!like_match(
            &compiled,
            &format!("{}b", "a".repeat(79)),
            false
        ));
    }

    #[test]
    fn cost_per_byte_counts_like_work() {
        let cost = |q: &str| parse(q).map(|e| e.cost_per_byte());
        assert_eq!(cost("name = 'x' AND id IN (1, 2)"), Ok(0));
        assert_eq!(cost("name LIKE 'a%'"), Ok(1));
        assert_eq!(cost("name LIKE '%a%b%'"), Ok(1));
        assert_eq!(cost("name LIKE '%a_b%'"), Ok(2));
        // Anchored segments are compared in place, whatever their length.
        assert_eq!(cost("name LIKE '%a_b'"), Ok(1));
        let wide = format!(
            "name ILIKE '%{}%' OR (tag LIKE 'p%' AND x = 1)",
            "a_".repeat(65)
        );
        assert_eq!(cost(&wide), Ok(1 + 3 + 1));
    }

    #[test]
    fn cmp_int_float_is_exact() {
        assert_eq!(cmp_int_float(3, 3.0), Some(Ordering::Equal));
        assert_eq!(cmp_int_float(3, 3.5), Some(Ordering::Less));
        assert_eq!(cmp_int_float(-3, -3.5), Some(Ordering::Greater));
        assert_eq!(cmp_int_float(-4, -3.5), Some(Ordering::Less));
        assert_eq!(cmp_int_float(i64::MAX, 2f64.powi(63)), Some(Ordering::Less));
        assert_eq!(
            cmp_int_float(i64::MIN, -(2f64.powi(63))),
            Some(Ordering::Equal)
        );
        assert_eq!(cmp_int_float(i64::MIN, -1e19), Some(Ordering::Greater));
        assert_eq!(cmp_int_float(0, f64::NAN), None);
        assert_eq!(cmp_int_float(0, f64::INFINITY), Some(Ordering::Less));
    }

    // ----- property tests ------------------------------------------------

    /// Reference LIKE matcher: plain dynamic programming over (pattern, text).
    fn like_reference(pattern: &[LikeTok], text: &[char]) -> bool {
        let (n, m) = (pattern.len(), text.len());
        let mut dp = vec![vec![false; m + 1]; n + 1];
        dp[n][m] = true;
        for i in (0..n).rev() {
            for j in (0..=m).rev() {
                dp[i][j] = match pattern[i] {
                    LikeTok::Any => dp[i + 1][j] || (j < m && dp[i][j + 1]),
                    LikeTok::One => j < m && dp[i + 1][j + 1],
                    LikeTok::Lit(c) => j < m && text[j] == c && dp[i + 1][j + 1],
                };
            }
        }
        dp[0][0]
    }

    /// Reference LIKE read straight from the pattern text (escapes, `%`, `_`, ASCII case
    /// folding), independently of `compile_like`: dynamic programming over characters.
    fn like_reference_text(pattern: &str, text: &str, case_insensitive: bool) -> bool {
        enum P {
            Any,
            One,
            Lit(char),
        }
        let fold = |c: char| {
            if case_insensitive {
                c.to_ascii_lowercase()
            } else {
                c
            }
        };
        let mut tokens = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '%' => P::Any,
                '_' => P::One,
                '\\' => P::Lit(chars.next().unwrap_or('\\')),
                c => P::Lit(c),
            });
        }
        let text: Vec<char> = text.chars().collect();
        // reach[j]: the tokens read so far match text[..j].
        let mut reach = vec![false; text.len() + 1];
        reach[0] = true;
        for token in &tokens {
            let mut next = vec![false; text.len() + 1];
            for j in 0..=text.len() {
                next[j] = match token {
                    P::Any => reach[j] || (j > 0 && next[j - 1]),
                    P::One => j > 0 && reach[j - 1],
                    P::Lit(c) => j > 0 && reach[j - 1] && fold(text[j - 1]) == fold(*c),
                };
            }
            reach = next;
        }
        reach[text.len()]
    }

    /// `pattern` as a query string literal (the inverse of the lexer's escapes).
    fn quoted(pattern: &str) -> String {
        format!("'{}'", pattern.replace('\\', "\\\\").replace('\'', "''"))
    }

    fn scalar_strategy() -> impl Strategy<Value = Scalar> {
        prop_oneof![
            "[ -~\t\n]{0,8}".prop_map(Scalar::Str),
            any::<i64>().prop_map(Scalar::Int),
            any::<f64>()
                .prop_filter("finite", |d| d.is_finite())
                .prop_map(Scalar::Double),
            any::<bool>().prop_map(Scalar::Bool),
        ]
    }

    fn literal_for(vt: Option<ValueType>, ordering: bool) -> BoxedStrategy<Scalar> {
        match vt {
            None if ordering => scalar_strategy()
                .prop_filter("no bool", |s| !matches!(s, Scalar::Bool(_)))
                .boxed(),
            None => scalar_strategy().boxed(),
            Some(ValueType::String) => "[ -~]{0,8}".prop_map(Scalar::Str).boxed(),
            Some(ValueType::Int | ValueType::Double) => prop_oneof![
                any::<i64>().prop_map(Scalar::Int),
                (-1e6f64..1e6).prop_map(Scalar::Double),
            ]
            .boxed(),
            Some(ValueType::Bool) => any::<bool>().prop_map(Scalar::Bool).boxed(),
        }
    }

    fn property_strategy() -> impl Strategy<Value = Property> {
        let name = prop_oneof![
            "[a-z_][a-z0-9_]{0,5}",
            "[a-z]{1,3}(\\.[a-z_]{1,3}){1,2}",
            Just("and".to_string()),
            Just("In".to_string()),
            Just("foo.int_value".to_string()),
            "[ -~]{1,8}",
        ];
        let vt = prop_oneof![
            Just(None),
            Just(Some(ValueType::String)),
            Just(Some(ValueType::Int)),
            Just(Some(ValueType::Double)),
            Just(Some(ValueType::Bool)),
        ];
        (name, vt).prop_map(|(name, value_type)| Property { name, value_type })
    }

    fn condition_strategy() -> impl Strategy<Value = Node> {
        let ops = prop_oneof![
            Just(CmpOp::Eq),
            Just(CmpOp::Ne),
            Just(CmpOp::Lt),
            Just(CmpOp::Le),
            Just(CmpOp::Gt),
            Just(CmpOp::Ge),
        ];
        (property_strategy(), ops, 0u8..4).prop_flat_map(|(prop, op, kind)| {
            let vt = prop.value_type;
            let test: BoxedStrategy<Test> = match kind {
                0 | 1 => {
                    let op = if vt == Some(ValueType::Bool) && op.is_ordering() {
                        CmpOp::Ne
                    } else {
                        op
                    };
                    literal_for(vt, op.is_ordering())
                        .prop_map(move |value| Test::Compare { op, value })
                        .boxed()
                }
                2 if vt.is_none() || vt == Some(ValueType::String) => {
                    ("[ -~%_]{0,8}", any::<bool>())
                        .prop_map(|(pattern, ci)| Test::Like {
                            compiled: compile_like(&pattern, ci),
                            pattern,
                            case_insensitive: ci,
                        })
                        .boxed()
                }
                _ => prop::collection::vec(literal_for(vt, false), 1..4)
                    .prop_map(Test::In)
                    .boxed(),
            };
            test.prop_map(move |test| {
                Node::Cond(Condition {
                    prop: prop.clone(),
                    test,
                })
            })
        })
    }

    fn node_strategy() -> impl Strategy<Value = Node> {
        condition_strategy().prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(Node::Or),
                prop::collection::vec(inner, 2..4).prop_map(Node::And),
            ]
        })
    }

    fn target_strategy() -> impl Strategy<Value = Entity> {
        let names = prop_oneof![
            "[a-z_][a-z0-9_]{0,5}",
            "[a-z]{1,3}(\\.[a-z_]{1,3}){1,2}",
            "[ -~]{1,8}",
        ];
        prop::collection::vec((names, scalar_strategy()), 0..12).prop_map(|custom| Entity {
            own: vec![("name", Some(Scalar::Str("n".into()))), ("id", None)],
            custom,
        })
    }

    const TOKENS: &[&str] = &[
        "(",
        ")",
        "AND",
        "or",
        "name",
        "x.int_value",
        "`a b`",
        "`q`.bool_value",
        "=",
        "!=",
        "<>",
        "<",
        ">=",
        "==",
        "LIKE",
        "ilike",
        "IN",
        ",",
        "'x'",
        "\"y\"",
        "'",
        "\"",
        "`",
        "\\",
        "5",
        "-1.5e3",
        "-",
        ".",
        "true",
        "NOT",
        " ",
        "\t",
        "%",
        "é",
        "\u{0}",
    ];

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_input(input in any::<String>()) {
            let _ = parse(&input);
        }

        #[test]
        fn parse_never_panics_on_token_soup(
            parts in prop::collection::vec(prop::sample::select(TOKENS), 0..30)
        ) {
            let input = parts.join(" ");
            let _ = parse(&input).map(|e| e.matches(&model()));
            let input = parts.concat();
            let _ = parse(&input).map(|e| e.matches(&model()));
        }

        #[test]
        fn print_then_parse_round_trips(root in node_strategy(), target in target_strategy()) {
            let expr = Expr { root };
            let text = expr.to_string();
            let reparsed = parse(&text);
            prop_assert_eq!(reparsed.as_ref(), Ok(&expr), "text: {}", text);
            if let Ok(reparsed) = reparsed {
                prop_assert_eq!(reparsed.matches(&target), expr.matches(&target));
            }
        }

        #[test]
        fn like_without_wildcards_is_equality(pattern in "[ -~]{0,10}", text in "[ -~]{0,10}") {
            let pattern: String = pattern.chars().filter(|c| !matches!(c, '%' | '_' | '\\')).collect();
            prop_assert!(like_match(&compile_like(&pattern, false), &pattern, false));
            prop_assert_eq!(
                like_match(&compile_like(&pattern, false), &text, false),
                pattern == text
            );
            prop_assert_eq!(
                like_match(&compile_like(&pattern, true), &text, true),
                pattern.eq_ignore_ascii_case(&text)
            );
        }

        #[test]
        fn percent_matches_everything(text in any::<String>()) {
            prop_assert!(like_match(&compile_like("%", false), &text, false));
            prop_assert!(like_match(&compile_like("%%", true), &text, true));
        }

        #[test]
        fn like_agrees_with_reference(pattern in "[ab%_\\\\]{0,8}", text in "[ab\\\\]{0,10}") {
            let compiled = compile_like(&pattern, false);
            let chars: Vec<char> = text.chars().collect();
            prop_assert_eq!(like_match(&compiled, &text, false), like_reference(&compiled, &chars));
        }

        #[test]
        fn like_agrees_with_text_reference(
            pattern in "[abA_%\\\\\u{e9}]{0,10}",
            text in "[abA_%\\\\\u{e9}]{0,12}",
            case_insensitive in any::<bool>(),
        ) {
            let compiled = compile_like(&pattern, case_insensitive);
            prop_assert_eq!(
                like_match(&compiled, &text, case_insensitive),
                like_reference_text(&pattern, &text, case_insensitive)
            );
        }

        #[test]
        fn like_query_agrees_with_text_reference(
            pattern in "[abA_%\\\\]{0,10}",
            text in "[abA_%\\\\\u{e9}]{0,12}",
            case_insensitive in any::<bool>(),
        ) {
            let keyword = if case_insensitive { "ILIKE" } else { "LIKE" };
            let query = format!("p {keyword} {}", quoted(&pattern));
            let target = Entity { own: vec![], custom: vec![("p".into(), Scalar::Str(text.clone()))] };
            let expr = parse(&query);
            prop_assert!(expr.is_ok(), "{}: {:?}", query, expr);
            if let Ok(expr) = expr {
                prop_assert_eq!(
                    expr.matches(&target),
                    like_reference_text(&pattern, &text, case_insensitive),
                    "{}", query
                );
            }
        }

        #[test]
        fn like_long_segments_agree_with_reference(
            segment in "[ab_]{65,200}",
            fill in "[abA\u{e9}]{200}",
            before in "[aAb]{0,70}",
            after in "[aAb]{0,70}",
            flip in 0usize..400,
            shape in 0u8..4,
            case_insensitive in any::<bool>(),
        ) {
            // The text holds the segment (its `_` filled in), maybe with one change.
            let mut fill = fill.chars();
            let mut occurrence: Vec<char> = segment
                .chars()
                .map(|c| if c == '_' { fill.next().unwrap_or('a') } else { c })
                .collect();
            let clean: String = occurrence.iter().collect();
            if let Some(c) = occurrence.get_mut(flip) {
                *c = if *c == 'b' { 'a' } else { 'b' };
            }
            let changed: String = occurrence.iter().collect();
            let (pattern, text) = match shape {
                0 => (format!("%{segment}%"), format!("{before}{changed}{after}")),
                1 => (format!("{segment}%"), format!("{changed}{after}")),
                2 => (format!("%{segment}"), format!("{before}{changed}")),
                _ => (
                    format!("%a%{segment}%{segment}%b%"),
                    format!("{before}{clean}{after}{changed}{before}b"),
                ),
            };
            let compiled = compile_like(&pattern, case_insensitive);
            prop_assert_eq!(
                like_match(&compiled, &text, case_insensitive),
                like_reference_text(&pattern, &text, case_insensitive),
                "pattern {} text {}", pattern, text
            );
        }

        #[test]
        fn like_query_without_wildcards_is_equality_end_to_end(value in "[ -~]{0,10}") {
            let target = Entity { own: vec![], custom: vec![("p".into(), Scalar::Str(value.clone()))] };
            let plain: String = value.chars().filter(|c| !matches!(c, '%' | '_' | '\\')).collect();
            let literal = plain.replace('\'', "''");
            let like = parse(&format!("p LIKE '{literal}'"));
            let eq = parse(&format!("p = '{literal}'"));
            prop_assert!(like.is_ok() && eq.is_ok());
            if let (Ok(like), Ok(eq)) = (like, eq) {
                prop_assert_eq!(like.matches(&target), eq.matches(&target));
            }
        }
    }
}
