//! Hostile-profile cases: syntax.

use anyhow::Result;

use crate::common::{Ctx, Row};

pub fn cases(_ctx: &Ctx) -> Result<Vec<Row>> {
    Ok(Vec::new())
}
