//! Where a message sits in its topic's history, and what a history read answers.

use std::fmt;
use std::str::FromStr;

use super::event::Delivery;

/// A message's place in its topic's history (Redis): the topic's epoch and the message's offset.
///
/// Offsets count from 1 within an epoch, one per published message, with no holes. The epoch
/// is a random id given to a topic's history when it is created; it changes when the history
/// is lost and starts again (the broker restarted without persistence, or the topic was idle
/// longer than its metadata is kept), so an offset means something only together with its
/// epoch.
///
/// Written as `EPOCH:OFFSET` (epoch in hex) by [`Display`](fmt::Display) and read back by
/// [`FromStr`]: the form a client can keep and send back when it reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// The history's epoch (never 0).
    pub epoch: u64,
    /// The offset of the last message seen; 0 before the first.
    pub offset: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}:{}", self.epoch, self.offset)
    }
}

/// A string that is not `EPOCH:OFFSET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePositionError(());

impl fmt::Display for ParsePositionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a position is EPOCH:OFFSET, the epoch in hex and the offset in decimal")
    }
}

impl std::error::Error for ParsePositionError {}

impl FromStr for Position {
    type Err = ParsePositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (epoch, offset) = s.split_once(':').ok_or(ParsePositionError(()))?;
        let epoch = u64::from_str_radix(epoch, 16).map_err(|_| ParsePositionError(()))?;
        let offset = offset.parse().map_err(|_| ParsePositionError(()))?;
        if epoch == 0 {
            return Err(ParsePositionError(()));
        }
        Ok(Self { epoch, offset })
    }
}

/// What [`Broker::history`](super::Broker::history) found after a position.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Recovery {
    /// The messages published after the position, in order, oldest first: all of them when
    /// the last one's offset is `top.offset`, otherwise the first `limit` (ask again from the
    /// last one). Empty when nothing was published since.
    Messages {
        /// The messages, each with its position.
        messages: Vec<Delivery>,
        /// The topic's newest position when the history was read.
        top: Position,
    },
    /// The history no longer holds the message right after the position: it was trimmed by
    /// length or by age. Messages were lost for whoever stopped at that position.
    TooOld {
        /// The topic's newest position: where to start again.
        top: Position,
    },
    /// The position belongs to another epoch: the topic's history was lost and started again
    /// since, so what was missed cannot be known.
    EpochChanged {
        /// The topic's newest position in its current epoch: where to start again.
        top: Position,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_back_what_they_write() {
        let position = Position {
            epoch: 0xdead_beef,
            offset: 12,
        };
        assert_eq!(position.to_string(), "deadbeef:12");
        assert_eq!("deadbeef:12".parse::<Position>(), Ok(position));
        for bad in ["", "12", "x:1", "1:x", "0:5", "1:-1"] {
            assert!(bad.parse::<Position>().is_err(), "{bad}");
        }
    }
}
