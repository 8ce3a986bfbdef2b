//! Attacks on the native jail: processes that outlive their step, races with
//! the commit, privileges smuggled in file modes, the helper's spec.

use super::Case;

pub(super) fn cases() -> Vec<Case> {
    vec![]
}
