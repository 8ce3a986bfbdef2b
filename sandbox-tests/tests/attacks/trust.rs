//! Attacks on the judge's definition: journals, resume, caches, and the
//! files no stage may write.

use super::Case;

pub(super) fn cases() -> Vec<Case> {
    vec![]
}
