//! The pass/FAIL table that doctor and the e2e run end with: one row per check, with what was
//! found or, failed, what went wrong and what to do.

pub struct Row {
    pub check: String,
    pub result: Result<String, String>,
}

/// The rows, their checks aligned, under a `heading` line naming the checks' column when given.
pub fn print_table(heading: Option<&str>, rows: &[Row]) {
    let width = rows.iter().map(|row| row.check.len()).chain(heading.map(str::len)).max().unwrap_or(0);
    if let Some(heading) = heading {
        println!("\n{heading:width$}  result");
    }
    for row in rows {
        let (verdict, text) = match &row.result {
            Ok(found) => ("pass", found),
            Err(fix) => ("FAIL", fix),
        };
        println!("{:<width$}  {verdict}  {text}", row.check);
    }
}

/// How many rows failed.
pub fn failed(rows: &[Row]) -> usize {
    rows.iter().filter(|row| row.result.is_err()).count()
}
