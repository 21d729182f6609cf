//! The recursive-descent parser of the filter language and the AST it builds:
//! `AND` binds tighter than `OR`, parentheses nest up to a limit, and literals
//! are checked against type suffixes and operators here, so that every error
//! is found before evaluation and points at the token at fault.

use super::lexer::{Lexer, TokKind, Token, is_keyword};
use super::like::{LikePattern, compile_like};
use super::{FilterError, MAX_LIKE_PATTERN_LEN, MAX_NESTING_DEPTH, Scalar, ValueType, error};

/// A node of the AST.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    /// At least two operands.
    Or(Vec<Node>),
    /// At least two operands.
    And(Vec<Node>),
    Cond(Condition),
}

/// `property test`, e.g. `name LIKE 'a%'`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Condition {
    pub(super) prop: Property,
    pub(super) test: Test,
}

/// A property name, with its explicit type when it has a suffix.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Property {
    pub(super) name: String,
    /// `Some` = explicit suffix: custom property of exactly that type.
    pub(super) value_type: Option<ValueType>,
}

/// A comparison operator (`<>` parses as [`CmpOp::Ne`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub(super) fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    pub(super) fn is_ordering(self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
}

/// What a condition tests its property's value with.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Test {
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

/// Parses a whole query (already checked for length, charset and emptiness by
/// `filter::parse`) into its AST.
pub(super) fn parse_query(input: &str) -> Result<Node, FilterError> {
    let mut parser = Parser {
        lexer: Lexer::new(input),
        input,
        peeked: None,
        depth: 0,
    };
    let root = parser.parse_or()?;
    let tok = parser.bump()?;
    match tok.kind {
        TokKind::End => Ok(root),
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
            None => error(self.lexer.pos(), "internal error: missing token"),
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
        self.parse_chain("or", Self::parse_and, Node::Or)
    }

    fn parse_and(&mut self) -> Result<Node, FilterError> {
        self.parse_chain("and", Self::parse_primary, Node::And)
    }

    /// `operand (keyword operand)*`: one operand alone, or `join` of them all.
    fn parse_chain(
        &mut self,
        keyword: &str,
        operand: fn(&mut Self) -> Result<Node, FilterError>,
        join: fn(Vec<Node>) -> Node,
    ) -> Result<Node, FilterError> {
        let first = operand(self)?;
        let mut items = Vec::new();
        while self.peek_is_keyword(keyword)? {
            self.bump()?;
            items.push(operand(self)?);
        }
        if items.is_empty() {
            Ok(first)
        } else {
            items.insert(0, first);
            Ok(join(items))
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

#[cfg(test)]
mod tests {
    use crate::domain::filter::tests::{err_at, m};
    use crate::domain::filter::{MAX_LIKE_PATTERN_LEN, MAX_QUERY_LEN, parse};

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
    fn error_missing_value() {
        err_at("name = ", 7, "expected a value after '='");
        err_at("name =", 6, "end of the query");
        err_at("name = AND x = 1", 7, "expected a value after '='");
        err_at("name = )", 7, "found ')'");
        err_at("name = mnist", 7, "quote text values");
        err_at("name LIKE", 9, "expected a value after LIKE");
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
}
