//! Per-topic ordering on a node: which received message to deliver, drop or recover around.

use super::position::Position;

/// What to do with a message that arrived at `position`, given the last one delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The next one: deliver it.
    Next,
    /// Already delivered (it came from history first): drop it.
    Duplicate,
    /// Messages are missing before it: recover them from history, starting after `from`.
    Gap { from: Position },
    /// The topic's history started again: report it, then recover the new epoch from its start.
    NewEpoch,
}

/// The verdict for a message at `position` when `last` was the last delivered.
///
/// With no `last` (the node holds no baseline for the topic) anything is next.
pub(crate) fn verdict(last: Option<Position>, position: Position) -> Verdict {
    match last {
        None => Verdict::Next,
        Some(last) if last.epoch != position.epoch => Verdict::NewEpoch,
        Some(last) if position.offset <= last.offset => Verdict::Duplicate,
        Some(last) if position.offset == last.offset + 1 => Verdict::Next,
        Some(last) => Verdict::Gap { from: last },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: u64, offset: u64) -> Position {
        Position { epoch, offset }
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(None, at(1, 9)), Verdict::Next);
        assert_eq!(verdict(Some(at(1, 8)), at(1, 9)), Verdict::Next);
        assert_eq!(verdict(Some(at(1, 9)), at(1, 9)), Verdict::Duplicate);
        assert_eq!(verdict(Some(at(1, 9)), at(1, 3)), Verdict::Duplicate);
        assert_eq!(
            verdict(Some(at(1, 4)), at(1, 9)),
            Verdict::Gap { from: at(1, 4) }
        );
        assert_eq!(verdict(Some(at(1, 4)), at(2, 1)), Verdict::NewEpoch);
    }
}
