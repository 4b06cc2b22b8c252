//! The hostile profile: a profile (or recipe) from someone else tries to
//! reach the host through rbm-launch itself, one named case each: unit
//! injection through Quadlet, host root over the bottle's files, volumes
//! that leave the profile's folder, credentials read without a yes, rbm's
//! own pieces taken from the current directory, and recipes (issue 22). A case passes when
//! rbm-launch refused it (naming the file, the field and the fix) or when
//! what it did stayed harmless (checked on the host). Every case ran and
//! failed before the fix that made it pass.
//! Writes the table tests/battery/hostile-profile-podman-VERSION-MODE.md.
//!
//! Network safety: the profiles' networks are the test's own
//! (10.250.70-79.0/24 and 10.251.70-79.0/24); nothing is sent anywhere.
//!
//! Needs root and RBM_PODMAN (like tests/e2e.rs); scripts/test runs it on
//! the first flavour and on 5.8 rootless.

use anyhow::{ensure, Context, Result};
use rbm_tests::bins::workspace_root;

#[path = "hostile_profile/common.rs"]
mod common;
#[path = "hostile_profile/credentials.rs"]
mod credentials;
#[path = "hostile_profile/pieces.rs"]
mod pieces;
#[path = "hostile_profile/recipes.rs"]
mod recipes;
#[path = "hostile_profile/root.rs"]
mod root;
#[path = "hostile_profile/syntax.rs"]
mod syntax;
#[path = "hostile_profile/volumes.rs"]
mod volumes;

use common::{table, Ctx};

#[test]
fn a_hostile_profile_does_not_reach_the_host() -> Result<()> {
    let Some(ctx) = Ctx::new()? else {
        return Ok(());
    };
    let mut rows = Vec::new();
    rows.extend(syntax::cases(&ctx).context("syntax cases")?);
    rows.extend(root::cases(&ctx).context("root cases")?);
    rows.extend(volumes::cases(&ctx).context("volume cases")?);
    rows.extend(credentials::cases(&ctx).context("credential cases")?);
    rows.extend(pieces::cases(&ctx).context("pieces cases")?);
    rows.extend(recipes::cases(&ctx).context("recipe cases")?);
    let label = ctx.label()?;
    let text = table(&label, &rows);
    let out = workspace_root().join(format!("tests/battery/hostile-profile-{label}.md"));
    std::fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("hostile profile: table in {}", out.display());
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.pass)
        .map(|r| r.case.as_str())
        .collect();
    ensure!(
        failed.is_empty(),
        "cases that got through: {failed:?}\n{text}"
    );
    Ok(())
}
