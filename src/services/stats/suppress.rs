//! Small-cell suppression (小数抑制) of a report's counts before anyone sees them.
//!
//! A count above zero and below the minimum cell is masked (primary suppression). Counts that
//! add up to a shown total form a group (every stratifier's strata add up to the report's
//! count; townships add up to their district, institutions to their category): a group with a
//! masked cell has at least two, together at least the minimum, or its parent is masked too,
//! and a masked parent has at least two masked children (complementary suppression), so that
//! no masked count is the difference of shown ones. A
//! record-based proportion shows the numerator (the yes) and the denominator: the no is their
//! difference, so it is a count like the others: a masked no masks its stratum's numerator,
//! and a masked numerator counts as masked in both. Everything is repeated until nothing
//! changes.

/// One reported stratum (or the report's own total, which is cell 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// The yes (numerator) count, and the no (denominator minus numerator) when the
    /// denominator is a count of the record; `None` when it is public (population estimates).
    pub yes: i64,
    pub no: Option<i64>,
    /// The cell the counts add up to (`None` for the total).
    pub parent: Option<usize>,
    /// Which group of siblings it belongs to (cells of one stratifier under one parent).
    pub group: usize,
    pub yes_masked: bool,
    pub den_masked: bool,
}

impl Cell {
    pub fn new(yes: i64, no: Option<i64>, parent: Option<usize>, group: usize) -> Cell {
        Cell {
            yes,
            no,
            parent,
            group,
            yes_masked: false,
            den_masked: false,
        }
    }

    fn den(&self) -> Option<i64> {
        self.no.map(|n| n + self.yes)
    }
}

/// Mask the cells' counts below `min` and what would reveal them.
pub fn suppress(cells: &mut [Cell], min: i64) {
    let small = |n: i64| n > 0 && n < min;
    for c in cells.iter_mut() {
        if small(c.yes) || c.no.is_some_and(small) {
            c.yes_masked = true;
        }
        if c.den().is_some_and(small) {
            c.den_masked = true;
            c.yes_masked = true;
        }
    }
    let groups = cells.iter().map(|c| c.group).max().map_or(0, |g| g + 1);
    loop {
        let mut changed = false;
        for g in 0..groups {
            let members: Vec<usize> = (0..cells.len()).filter(|&i| cells[i].group == g).collect();
            let Some(&first) = members.first() else {
                continue;
            };
            let parent = cells[first].parent;
            // The yes counts, the no counts and the denominators: three ways to add up.
            for measure in [Count::Yes, Count::No, Count::Den] {
                changed |= complete(cells, &members, parent, measure, min);
            }
        }
        if !changed {
            break;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Count {
    Yes,
    No,
    Den,
}

impl Count {
    fn of(self, c: &Cell) -> Option<i64> {
        match self {
            Count::Yes => Some(c.yes),
            Count::No => c.no,
            Count::Den => c.den(),
        }
    }

    /// Whether this count of the cell is hidden (a no is hidden with its numerator).
    fn hidden(self, c: &Cell) -> bool {
        match self {
            Count::Yes | Count::No => c.yes_masked,
            Count::Den => c.den_masked,
        }
    }

    /// Hide this count of the cell; whether that changed anything.
    fn hide(self, c: &mut Cell) -> bool {
        let before = (c.yes_masked, c.den_masked);
        match self {
            Count::Yes | Count::No => c.yes_masked = true,
            Count::Den => {
                c.den_masked = true;
                c.yes_masked = true;
            }
        }
        before != (c.yes_masked, c.den_masked)
    }
}

/// Make one group safe for one count: two or more hidden, adding up to `min` or more, else
/// hide the smallest shown non-zero sibling, or failing one, the parent.
fn complete(
    cells: &mut [Cell],
    members: &[usize],
    parent: Option<usize>,
    count: Count,
    min: i64,
) -> bool {
    if members.iter().any(|&i| count.of(&cells[i]).is_none()) {
        return false;
    }
    let mut changed = false;
    loop {
        let hidden: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| count.hidden(&cells[i]))
            .collect();
        let parent_hidden = parent.is_some_and(|p| count.hidden(&cells[p]));
        // Shown children of a hidden parent would add up to it.
        if hidden.is_empty() && !parent_hidden {
            return changed;
        }
        let sum: i64 = hidden.iter().filter_map(|&i| count.of(&cells[i])).sum();
        if hidden.len() >= 2 && sum >= min {
            return changed;
        }
        let next = members
            .iter()
            .copied()
            .filter(|&i| !count.hidden(&cells[i]) && count.of(&cells[i]).is_some_and(|n| n > 0))
            .min_by_key(|&i| count.of(&cells[i]));
        match (next, parent) {
            (Some(i), _) => changed |= count.hide(&mut cells[i]),
            (None, Some(p)) => {
                // Too few siblings to hide among: the parent goes too (a lone child is its
                // parent's count).
                changed |= count.hide(&mut cells[p]);
                return changed;
            }
            (None, None) => return changed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A total and one stratifier of the given yes counts (public denominators).
    fn table(total: i64, strata: &[i64]) -> Vec<Cell> {
        let mut cells = vec![Cell::new(total, None, None, 0)];
        cells.extend(strata.iter().map(|&n| Cell::new(n, None, Some(0), 1)));
        cells
    }

    fn masked(cells: &[Cell]) -> Vec<bool> {
        cells.iter().map(|c| c.yes_masked).collect()
    }

    #[test]
    fn one_small_cell_takes_the_next_smallest_with_it() {
        let mut cells = table(100, &[3, 40, 12, 45]);
        suppress(&mut cells, 10);
        assert_eq!(masked(&cells), [false, true, false, true, false]);
    }

    #[test]
    fn two_small_cells_adding_below_the_minimum_take_a_third() {
        let mut cells = table(100, &[2, 3, 50, 45]);
        suppress(&mut cells, 10);
        assert_eq!(masked(&cells), [false, true, true, false, true]);
    }

    #[test]
    fn zeros_are_shown_and_never_complete_a_group() {
        let mut cells = table(30, &[0, 4, 26]);
        suppress(&mut cells, 10);
        assert_eq!(masked(&cells), [false, false, true, true]);
    }

    #[test]
    fn a_small_total_hides_everything_below_it() {
        let mut cells = table(7, &[3, 4]);
        suppress(&mut cells, 10);
        assert_eq!(masked(&cells), [true, true, true]);
    }

    #[test]
    fn a_lone_child_masks_its_parent_and_the_parent_its_sibling() {
        // Total 100 = district A 60 + district B 40; A's townships 55 + 5, B has one township.
        let mut cells = vec![
            Cell::new(100, None, None, 0),
            Cell::new(60, None, Some(0), 1),
            Cell::new(40, None, Some(0), 1),
            Cell::new(55, None, Some(1), 2),
            Cell::new(5, None, Some(1), 2),
            Cell::new(40, None, Some(2), 3),
        ];
        suppress(&mut cells, 10);
        // The township of 5 takes its sibling of 55 with it; nothing else is needed.
        assert_eq!(masked(&cells), [false, false, false, true, true, false]);
        // A district with one small township: the township cannot hide among siblings,
        // so the district is hidden, and then one more district.
        let mut cells = vec![
            Cell::new(100, None, None, 0),
            Cell::new(6, None, Some(0), 1),
            Cell::new(50, None, Some(0), 1),
            Cell::new(44, None, Some(0), 1),
            Cell::new(6, None, Some(1), 2),
        ];
        suppress(&mut cells, 10);
        assert_eq!(masked(&cells), [false, true, false, true, true]);
    }

    #[test]
    fn a_hidden_parent_hides_children_that_would_add_up_to_it() {
        // Districts 42 and 3: both hidden (the total is shown); 42's townships 30 and 12
        // would show it again, so they are hidden too.
        let mut cells = vec![
            Cell::new(45, None, None, 0),
            Cell::new(42, None, Some(0), 1),
            Cell::new(3, None, Some(0), 1),
            Cell::new(30, None, Some(1), 2),
            Cell::new(12, None, Some(1), 2),
            Cell::new(3, None, Some(2), 3),
        ];
        suppress(&mut cells, 10);
        assert_eq!(masked(&cells), [false, true, true, true, true, true]);
    }

    #[test]
    fn a_small_no_hides_the_numerator_and_a_small_denominator_everything() {
        // 48 of 50 yes: 2 no would be the difference of two shown counts.
        let mut cells = vec![
            Cell::new(90, Some(20), None, 0),
            Cell::new(48, Some(2), Some(0), 1),
            Cell::new(42, Some(18), Some(0), 1),
        ];
        suppress(&mut cells, 10);
        assert!(cells[1].yes_masked && !cells[1].den_masked);
        assert!(
            cells[2].yes_masked,
            "the complement of the masked numerator"
        );
        assert!(!cells[0].yes_masked);
        let mut cells = vec![
            Cell::new(60, Some(40), None, 0),
            Cell::new(3, Some(4), Some(0), 1),
            Cell::new(57, Some(36), Some(0), 1),
        ];
        suppress(&mut cells, 10);
        assert!(cells[1].den_masked && cells[1].yes_masked);
        assert!(cells[2].den_masked, "the denominator's complement");
    }
}
