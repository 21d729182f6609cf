//! The `LIKE` / `ILIKE` matcher. A pattern is compiled once, at parse time,
//! into segments between `%`, each found by the search that suits its shape
//! (substring search, or bit-parallel Shift-And when it holds `_`), so that a
//! match takes time linear in the text whatever the pattern: a backtracking
//! matcher lets one crafted pattern keep a server busy for minutes.

/// One element of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LikeTok {
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
pub(super) struct LikePattern {
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

/// Compiles a pattern (after the string literal's own escapes): `%`, `_`, and `\` making
/// the next character literal; ILIKE patterns are ASCII-lowercased here, once.
pub(super) fn compile_like(pattern: &str, case_insensitive: bool) -> LikePattern {
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
pub(super) fn like_match(pattern: &LikePattern, text: &str, case_insensitive: bool) -> bool {
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

    /// Work units per byte of text, for
    /// [`Expr::cost_per_byte`](super::Expr::cost_per_byte): one for the scan,
    /// plus the 64-bit words of the widest Shift-And state.
    pub(super) fn cost_per_byte(&self) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::filter::parse;
    use crate::domain::filter::tests::{like_reference_text, m};

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
}
