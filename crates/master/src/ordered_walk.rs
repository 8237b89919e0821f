//! Walking two key-ordered sequences side by side (the allocator's and the ledger's
//! per-agent records beside the agents of a pass) with one key comparison per step.
//! Agent ids share a long prefix (the master's id), so comparing them is most of such a
//! walk's cost at 10,000 agents: asking "less?" and then "equal?" compared each id twice.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::iter::Peekable;

/// Advances `entries` (in key order) to `key`: hands each entry whose key sorts before
/// it to `passed`, then takes and returns the entry with `key`, if there is one.
pub fn advance_to<K, V, Q, I>(
    entries: &mut Peekable<I>,
    key: &Q,
    mut passed: impl FnMut(K, V),
) -> Option<(K, V)>
where
    I: Iterator<Item = (K, V)>,
    K: Borrow<Q>,
    Q: Ord + ?Sized,
{
    loop {
        match entries.peek().map(|(k, _)| k.borrow().cmp(key)) {
            Some(Ordering::Less) => {
                let (k, v) = entries.next().expect("peeked");
                passed(k, v);
            }
            Some(Ordering::Equal) => return entries.next(),
            Some(Ordering::Greater) | None => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_smaller_keys_takes_the_equal_one_and_stops_before_larger_ones() {
        let mut entries = [(1, 'a'), (3, 'b'), (4, 'c'), (7, 'd')]
            .into_iter()
            .peekable();
        let mut passed = Vec::new();
        assert_eq!(
            advance_to(&mut entries, &0, |k, v| passed.push((k, v))),
            None
        );
        assert_eq!(
            advance_to(&mut entries, &3, |k, v| passed.push((k, v))),
            Some((3, 'b'))
        );
        assert_eq!(
            advance_to(&mut entries, &5, |k, v| passed.push((k, v))),
            None
        );
        assert_eq!(passed, [(1, 'a'), (4, 'c')]);
        assert_eq!(
            advance_to(&mut entries, &9, |k, v| passed.push((k, v))),
            None
        );
        assert_eq!(passed, [(1, 'a'), (4, 'c'), (7, 'd')]);
        assert_eq!(entries.next(), None);
    }

    #[test]
    fn keys_may_be_references() {
        let owned = [String::from("a"), String::from("b")];
        let mut entries = owned.iter().map(|k| (k, ())).peekable();
        let b = String::from("b");
        assert_eq!(advance_to(&mut entries, &b, |_, _| {}), Some((&b, ())));
    }
}
