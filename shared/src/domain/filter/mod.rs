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
//!
//! The files of this module, in the order a query goes through them:
//! `lexer` (characters to tokens), `parser` (tokens to the AST, with every
//! syntax and type check), `eval` (the AST against one entity), `like` (the
//! `LIKE` / `ILIKE` matcher the parser compiles and `eval` runs) and `print`
//! (the AST back to canonical query text). `tests` holds the fixtures the unit
//! tests of every file share and the property tests across all of them.

mod eval;
mod lexer;
mod like;
mod parser;
mod print;
#[cfg(test)]
mod tests;

use parser::Node;

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
    lexer::check_charset(input)?;
    if input.bytes().all(lexer::is_space) {
        return error(
            0,
            "the filter query is empty; expected a condition such as name = 'x'",
        );
    }
    let root = parser::parse_query(input)?;
    Ok(Expr { root })
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

#[cfg(test)]
mod parse_tests {
    use super::*;
    use crate::domain::filter::tests::{err, err_at};

    #[test]
    fn error_empty_and_whitespace() {
        err_at("", 0, "empty");
        err_at("   \t\n", 0, "empty");
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
}
