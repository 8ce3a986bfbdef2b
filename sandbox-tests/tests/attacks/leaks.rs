//! Attacks on the barrier's channels: the program under test or a holdout
//! reader sending bytes to a stage, taint, time separation, deadlines.

use super::Case;

pub(super) fn cases() -> Vec<Case> {
    vec![]
}
