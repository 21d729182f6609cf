//! Evaluation of a parsed filter against one entity: where a property's value
//! comes from (own field or custom property), how values of different types
//! compare (exact integer/float comparison, numeric strings, booleans), and the
//! estimated cost of a filter per byte of text it scans.

use std::cmp::Ordering;

use super::like::like_match;
use super::parser::{CmpOp, Condition, Node, Test};
use super::{FilterTarget, Scalar};

impl CmpOp {
    /// Whether `value op literal` is true, given how the two compare.
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

impl Node {
    /// True when the entity satisfies this node.
    pub(super) fn eval(&self, target: &dyn FilterTarget) -> bool {
        match self {
            Node::Or(items) => items.iter().any(|n| n.eval(target)),
            Node::And(items) => items.iter().all(|n| n.eval(target)),
            Node::Cond(cond) => cond.eval(target),
        }
    }

    /// See [`Expr::cost_per_byte`](super::Expr::cost_per_byte).
    pub(super) fn cost_per_byte(&self) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::filter::parse;
    use crate::domain::filter::tests::{Entity, m};

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
}
