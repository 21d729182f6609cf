//! The canonical query text of a parsed filter (`Display` of `Expr`): it parses
//! back to an equal expression, with parentheses and backquotes only where the
//! parser needs them. Used in logs and to check the parser (printing then
//! parsing must round-trip).

use std::fmt;

use super::lexer::{is_ident, is_keyword};
use super::parser::{Condition, Node, Property, Test};
use super::{Expr, Scalar, ValueType};

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

#[cfg(test)]
mod tests {
    use crate::domain::filter::{Expr, parse};

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
}
