//! The tokenizer of the filter language: character classes, the check that a
//! query is printable ASCII, and the tokens (names, backquoted names, strings
//! with their escapes, numbers, operators, punctuation), each with the byte span
//! it covers so that errors point at the right place.

use super::parser::CmpOp;
use super::{FilterError, ValueType, error};

/// Whitespace between tokens: space, tab, newline, carriage return.
pub(super) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A plain name part: a letter or `_`, then letters, digits or `_`.
pub(super) fn is_ident(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if is_ident_start(b) => bytes.all(is_ident_char),
        _ => false,
    }
}

const KEYWORDS: [&str; 8] = ["and", "or", "like", "ilike", "in", "true", "false", "not"];

/// A keyword of the language, in any case; not usable as a bare property name.
pub(super) fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// Rejects any byte that is not printable ASCII or whitespace, naming the character.
pub(super) fn check_charset(input: &str) -> Result<(), FilterError> {
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

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum TokKind {
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

/// A token and the bytes `pos..end` of the query it was read from.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub(super) kind: TokKind,
    pub(super) pos: usize,
    pub(super) end: usize,
}

/// Reads the tokens of a query one at a time, on demand of the parser.
pub(super) struct Lexer<'a> {
    /// Validated printable ASCII.
    src: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `input`, which `check_charset` has accepted.
    pub(super) fn new(input: &'a str) -> Lexer<'a> {
        Lexer {
            src: input.as_bytes(),
            pos: 0,
        }
    }

    /// Byte offset of the next token (or of the whitespace before it).
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.src.get(self.pos + offset).copied()
    }

    fn text(&self, start: usize, end: usize) -> String {
        self.src
            .get(start..end)
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .unwrap_or_default()
    }

    /// The next token; [`TokKind::End`] at the end of the query, and from then on.
    pub(super) fn next_token(&mut self) -> Result<Token, FilterError> {
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

#[cfg(test)]
mod tests {
    use crate::domain::filter::parser::{CmpOp, Condition, Node, Property, Test};
    use crate::domain::filter::tests::{err_at, m, s};
    use crate::domain::filter::{Expr, Scalar, parse};

    #[test]
    fn operators_without_spaces() {
        assert!(m("epochs>=10"));
        assert!(m("epochs<>9"));
        assert!(m("epochs!=-1"));
        assert!(m("epochs>-1"));
        assert!(m("name='mnist-v1'AND(epochs=10)"));
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
}
