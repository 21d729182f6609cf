//! Tests across the whole filter module, and the fixtures the unit tests of
//! every file share: a small entity, query helpers and two reference `LIKE`
//! matchers (plain dynamic programming, independent of the compiled matcher).
//! The property tests here check that no input makes the parser panic, that
//! printing then parsing round-trips, that `LIKE` agrees with the references,
//! and that attack patterns on long texts finish.

use proptest::prelude::*;

use super::like::{LikeTok, compile_like, like_match};
use super::parser::{CmpOp, Condition, Node, Property, Test};
use super::*;

/// A small entity: own fields `name`, `id`, `state`, `externalId` (unset), `uri`,
/// plus custom properties.
#[derive(Debug, Clone, Default)]
pub(super) struct Entity {
    pub(super) own: Vec<(&'static str, Option<Scalar>)>,
    pub(super) custom: Vec<(String, Scalar)>,
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

pub(super) fn s(v: &str) -> Scalar {
    Scalar::Str(v.to_string())
}

/// The entity `m` evaluates queries against.
pub(super) fn model() -> Entity {
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

/// Whether `query` matches [`model`]; panics when it does not parse.
#[track_caller]
pub(super) fn m(query: &str) -> bool {
    match parse(query) {
        Ok(expr) => expr.matches(&model()),
        Err(e) => panic!("{query:?} should parse but: {e}"),
    }
}

/// The error of a query that must not parse.
#[track_caller]
pub(super) fn err(query: &str) -> FilterError {
    match parse(query) {
        Ok(expr) => panic!("{query:?} should fail but parsed to {expr:?}"),
        Err(e) => e,
    }
}

/// Checks that `query` fails at `position` with a message containing `fragment`.
#[track_caller]
pub(super) fn err_at(query: &str, position: usize, fragment: &str) {
    let e = err(query);
    assert_eq!(e.position, position, "{query:?}: {e}");
    assert!(
        e.message.contains(fragment),
        "{query:?}: message {:?} lacks {fragment:?}",
        e.message
    );
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
pub(super) fn like_reference_text(pattern: &str, text: &str, case_insensitive: bool) -> bool {
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
            2 if vt.is_none() || vt == Some(ValueType::String) => ("[ -~%_]{0,8}", any::<bool>())
                .prop_map(|(pattern, ci)| Test::Like {
                    compiled: compile_like(&pattern, ci),
                    pattern,
                    case_insensitive: ci,
                })
                .boxed(),
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
