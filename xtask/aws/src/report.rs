//! The pass/FAIL table that doctor and the e2e run end with: one row per check, with what was
//! found or, failed, what went wrong and what to do.

pub struct Row {
    pub check: String,
    pub result: Result<String, String>,
}

/// The rows, their checks aligned; `failed` counts the failures.
pub fn print_table(rows: &[Row]) {
    let width = rows.iter().map(|row| row.check.len()).max().unwrap_or(0);
    for row in rows {
        let (verdict, text) = match &row.result {
            Ok(found) => ("pass", found),
            Err(fix) => ("FAIL", fix),
        };
        println!("{:<width$}  {verdict}  {text}", row.check);
    }
}

pub fn failed(rows: &[Row]) -> usize {
    rows.iter().filter(|row| row.result.is_err()).count()
}
