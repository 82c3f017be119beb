//! Area populations, the indicators' denominators: read from CSV (`huimin stats population`)
//! with every line checked, and loaded in one write.

use crate::error::ApiError;
use crate::services::audit::Draft;
use crate::store::Store;
use crate::store::stats::{self as rows, Population};

/// The header a population file starts with.
pub const HEADER: &str = "area,year,sex,age_from,age_to,population";

/// The rows of a population file; an error names the line and the column.
pub fn parse_csv(text: &str) -> Result<Vec<Population>, String> {
    let mut lines = text
        .trim_start_matches('\u{feff}')
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, h)) if h.trim().replace(' ', "") == HEADER => {}
        _ => return Err(format!("line 1: expected the header {HEADER}")),
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in lines {
        let n = i + 1;
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        if cols.len() != 6 {
            return Err(format!(
                "line {n}: expected 6 columns, found {}",
                cols.len()
            ));
        }
        let area = cols[0];
        if !crate::auth::is_area(Some(area)) {
            return Err(format!(
                "line {n}: area '{area}' is not a GB/T 2260 code (6 digits) or a township's (9)"
            ));
        }
        let int = |k: usize, name: &str| {
            cols[k]
                .parse::<i64>()
                .map_err(|_| format!("line {n}: {name} '{}' is not a whole number", cols[k]))
        };
        let year = int(1, "year")?;
        if !(1900..=2200).contains(&year) {
            return Err(format!("line {n}: year {year} is out of range"));
        }
        let sex = cols[2];
        if !matches!(sex, "male" | "female") {
            return Err(format!("line {n}: sex '{sex}' is not male or female"));
        }
        let (from, to) = (int(3, "age_from")?, int(4, "age_to")?);
        if !(0..=150).contains(&from) || !(0..=150).contains(&to) || from > to {
            return Err(format!(
                "line {n}: ages {from} to {to}: need 0 <= age_from <= age_to <= 150"
            ));
        }
        let population = int(5, "population")?;
        if population < 0 {
            return Err(format!("line {n}: population {population} is negative"));
        }
        if !seen.insert((area.to_owned(), year, sex.to_owned(), from)) {
            return Err(format!(
                "line {n}: {area} {year} {sex} from age {from} is given twice"
            ));
        }
        out.push(Population {
            area: area.to_owned(),
            year: year as i32,
            sex: sex.to_owned(),
            age_from: from as i32,
            age_to: to as i32,
            population,
        });
    }
    if out.is_empty() {
        return Err("the file holds no rows".to_owned());
    }
    Ok(out)
}

/// Load `rows`: those of each (area, year) they hold replace what was loaded before, in one
/// audited write.
pub fn load(store: &Store, rows: Vec<Population>) -> Result<usize, ApiError> {
    let draft = Draft::platform(
        "huimin:stats-population",
        "population-load",
        "stat_population",
    );
    crate::services::record::write(store, draft, move |tx| {
        Ok(rows::put_population(tx.conn(), &rows)?)
    })
}
