//! Step ordering: `needs` edges, cycle detection and a stable topological order.

use std::collections::BTreeSet;

/// Orders nodes `0..needs.len()` so each comes after everything it needs;
/// ties keep declaration order (the index). `needs[i]` lists indices.
///
/// # Errors
/// A cycle, as the list of indices along it with the first repeated at the
/// end (`[a, b, a]`).
pub fn topological_order(needs: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    if let Some(cycle) = find_cycle(needs) {
        return Err(cycle);
    }
    let mut waiting: Vec<usize> = needs.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); needs.len()];
    for (node, deps) in needs.iter().enumerate() {
        for &dep in deps {
            dependents[dep].push(node);
        }
    }
    let mut ready: BTreeSet<usize> = (0..needs.len()).filter(|&n| waiting[n] == 0).collect();
    let mut order = Vec::with_capacity(needs.len());
    while let Some(node) = ready.pop_first() {
        order.push(node);
        for &next in &dependents[node] {
            waiting[next] -= 1;
            if waiting[next] == 0 {
                ready.insert(next);
            }
        }
    }
    Ok(order)
}

fn find_cycle(needs: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; needs.len()];
    for start in 0..needs.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: the path and, per node on it, the next edge to try.
        let mut path = vec![(start, 0usize)];
        mark[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut edge)) = path.last_mut() {
            if let Some(&next) = needs[node].get(*edge) {
                *edge += 1;
                match mark[next] {
                    Mark::OnPath => {
                        let from = path.iter().position(|&(n, _)| n == next).unwrap_or(0);
                        let mut cycle: Vec<usize> = path[from..].iter().map(|&(n, _)| n).collect();
                        cycle.push(next);
                        return Some(cycle);
                    }
                    Mark::New => {
                        mark[next] = Mark::OnPath;
                        path.push((next, 0));
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                path.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_respects_needs_and_declaration_order() {
        // 0 needs 2; 1 free; 2 free.
        assert_eq!(topological_order(&[vec![2], vec![], vec![]]), Ok(vec![1, 2, 0]));
    }

    #[test]
    fn cycle_is_reported_along_its_path() {
        assert_eq!(topological_order(&[vec![1], vec![2], vec![0]]), Err(vec![0, 1, 2, 0]));
        assert_eq!(topological_order(&[vec![0]]), Err(vec![0, 0]));
    }

    #[test]
    fn long_chain_does_not_overflow_the_stack() {
        let needs: Vec<Vec<usize>> = (0..100_000).map(|i| if i == 0 { vec![] } else { vec![i - 1] }).collect();
        assert_eq!(topological_order(&needs).unwrap().len(), 100_000);
    }
}
