//! Recipes: a bottle made from a recipe. A recipe is a folder holding a
//! `Containerfile` (the bottle's image: an AI coding agent, a notebook)
//! and a `profile.toml` (what that bottle may reach) without
//! `bottle.image`: `rbm-launch run` builds the image from the folder and
//! names it after the profile's moniker and the folder's contents
//! ([`Recipe::image`]), so a changed recipe is a new image and an
//! unchanged one is built once.
//!
//! rbm ships its recipes in `recipes/NAME/` beside its profiles; a bare
//! NAME is only ever one of those (never a folder of the current
//! directory, as for profiles); any other recipe is named by its path.

use std::path::{Path, PathBuf};

use rbm_profile::{resolve_in, Profile, ProfileError, Source, Volume};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::lookup::{self, Loaded, Places};
use crate::podman::{args, Podman};

/// The recipe's image definition, in its folder.
pub const CONTAINERFILE: &str = "Containerfile";
/// The recipe's profile, in its folder (not part of the image).
pub const PROFILE: &str = "profile.toml";
/// Where `run` mounts the workspace in the bottle.
pub const WORKSPACE: &str = "/workspace";
/// The label that tells which recipe contents an image was built from.
pub const HASH_LABEL: &str = "rbm.recipe";

/// A recipe folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// As the user named it.
    pub arg: String,
    /// The folder, canonical.
    pub dir: PathBuf,
}

impl Recipe {
    /// The recipe `arg` names, if it names one: a path (it contains `/`)
    /// to a folder, or the name of a recipe rbm ships. None: `arg` is no
    /// recipe (a profile, maybe). A folder that lacks a recipe's files is
    /// an error.
    pub fn find(arg: &str, places: &Places) -> Result<Option<Recipe>, Error> {
        let dir = if arg.contains('/') {
            let dir = places.cwd.join(arg);
            if !dir.is_dir() {
                return Ok(None);
            }
            dir
        } else if arg.ends_with(".toml") {
            return Ok(None);
        } else {
            match shipped_dir(places).map(|d| d.join(arg)) {
                Some(d) if is_name(arg) && d.is_dir() => d,
                _ => return Ok(None),
            }
        };
        let dir = dir.canonicalize().map_err(|e| Error::Recipe {
            arg: arg.into(),
            what: format!("cannot resolve {}: {e}", dir.display()),
            fix: "name an existing folder".into(),
        })?;
        for file in [CONTAINERFILE, PROFILE] {
            // Not a link: the hash reads a link's target path, podman
            // would read the file it leads to.
            let regular = std::fs::symlink_metadata(dir.join(file)).is_ok_and(|m| m.is_file());
            if !regular {
                return Err(Error::Recipe {
                    arg: arg.into(),
                    what: format!("{} has no {file} (a file of its own, not a link)", dir.display()),
                    fix: format!(
                        "a recipe is a folder holding a {CONTAINERFILE} (its image) and a {PROFILE} (what it may reach, without bottle.image); add it, or name another folder"
                    ),
                });
            }
        }
        Ok(Some(Recipe {
            arg: arg.into(),
            dir,
        }))
    }

    /// The recipe `arg` names, or an error that lists rbm's.
    pub fn named(arg: &str, places: &Places) -> Result<Recipe, Error> {
        Recipe::find(arg, places)?.ok_or_else(|| Error::UnknownRecipe {
            name: arg.into(),
            available: built_in(places).into_iter().map(|(n, _)| n).collect(),
        })
    }

    /// A digest of the folder's contents but its profile: every file's
    /// path and bytes (a link's: its target), in order.
    pub fn hash(&self) -> Result<String, Error> {
        let mut files = Vec::new();
        walk(&self.dir, Path::new(""), &mut files).map_err(|source| Error::Io {
            what: "cannot read the recipe folder",
            path: self.dir.clone(),
            fix: "make the recipe's files readable",
            source,
        })?;
        files.sort();
        let mut h = Sha256::new();
        for rel in files.iter().filter(|r| r.as_path() != Path::new(PROFILE)) {
            let bytes = contents(&self.dir.join(rel)).map_err(|source| Error::Io {
                what: "cannot read a recipe file",
                path: self.dir.join(rel),
                fix: "make the recipe's files readable",
                source,
            })?;
            let name = rel.to_string_lossy();
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        // All of it: a recipe must not be able to pass for another one
        // whose image is built already (a shorter name could be matched).
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The image a recipe of profile `moniker` and contents `hash` is built as.
    pub fn image(moniker: &str, hash: &str) -> String {
        format!("localhost/rbm-recipe-{moniker}:{hash}")
    }

    /// The recipe's profile, its image named ([`Recipe::image`]): what the
    /// sentry gets is that text. A profile that names an image itself is
    /// refused (the recipe's image is its Containerfile's).
    pub fn load(&self, places: &Places) -> Result<Loaded, Error> {
        let path = self.dir.join(PROFILE);
        let original = std::fs::read_to_string(&path).map_err(|source| ProfileError::Read {
            file: path.clone(),
            source,
        })?;
        let mut table: toml::Table = match original.parse() {
            Ok(t) => t,
            // The profile's own message for it.
            Err(_) => {
                return Err(Profile::parse(&original, &path).err().map_or_else(
                    || Error::Recipe {
                        arg: self.arg.clone(),
                        what: format!("{} is not TOML", path.display()),
                        fix: "correct its syntax".into(),
                    },
                    Error::from,
                ))
            }
        };
        if let Some(toml::Value::Table(bottle)) = table.get_mut("bottle") {
            if bottle.contains_key("image") {
                return Err(ProfileError::Invalid {
                    file: path,
                    problems: vec![rbm_profile::Problem {
                        field: "bottle.image".into(),
                        message: "a recipe's image is built from its Containerfile".into(),
                        fix: format!(
                            "remove it: `rbm-launch run` builds {CONTAINERFILE} and names the image"
                        ),
                    }],
                }
                .into());
            }
            let moniker = match table.get("moniker") {
                Some(toml::Value::String(m)) => m.clone(),
                _ => String::new(),
            };
            let image = Recipe::image(&moniker, &self.hash()?);
            if let Some(toml::Value::Table(bottle)) = table.get_mut("bottle") {
                bottle.insert("image".into(), toml::Value::String(image));
            }
        }
        let text = toml::to_string(&table).map_err(|e| Error::Recipe {
            arg: self.arg.clone(),
            what: format!("cannot write its profile again: {e}"),
            fix: "simplify the profile".into(),
        })?;
        let profile = Profile::parse(&text, &path)?;
        self.credentials_outside(&profile)?;
        containerfile_allowed(&self.dir.join(CONTAINERFILE))
            .map_err(|what| self.refused(what, "remove it: a recipe's build gets the network Podman gives any build, its own folder as context, and nothing else of this machine"))?;
        let mut loaded = lookup::loaded(&self.arg, path, text, profile, places)?;
        loaded.recipe = Some(self.dir.join(CONTAINERFILE));
        Ok(loaded)
    }

    fn refused(&self, what: String, fix: &str) -> Error {
        Error::Recipe {
            arg: self.arg.clone(),
            what,
            fix: fix.into(),
        }
    }

    /// A credential's `file:` may not lie in the recipe's folder: the
    /// folder is the build's context, which the Containerfile reads (a
    /// `COPY` or a `RUN --mount=type=bind` would hand the real value to
    /// the build and its image).
    fn credentials_outside(&self, profile: &Profile) -> Result<(), Error> {
        for c in &profile.credentials {
            if let Source::File(written) = &c.from {
                let inside = resolve_in(&self.dir, written)
                    .map(|(p, _)| p.starts_with(&self.dir))
                    .unwrap_or(true);
                if inside {
                    return Err(Error::Credential {
                        env: c.env.clone(),
                        message: format!(
                            "its file:{written} lies in the recipe's folder {}, which is what the image is built from: the build could read the real value",
                            self.dir.display()
                        ),
                        fix: "keep the key outside the recipe (e.g. `from = \"env:NAME\"`, or a file elsewhere with `outside = true`)".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The recipe's name in messages: a built-in's name, or its folder.
    pub fn shown(&self) -> String {
        self.arg.clone()
    }
}

/// The environment variable whose words `build` adds to `podman build`
/// (e.g. a volume with a proxy's CA for the build's package managers).
pub const BUILD_ARGS: &str = "RBM_BUILD_ARGS";

/// Builds the recipe's bottle image `image` (as [`Recipe::load`] named
/// it) unless podman has it: its output shows as it builds. Returns
/// whether it built. A failed build starts nothing.
pub fn build(podman: &Podman, recipe: &Recipe, image: &str) -> Result<bool, Error> {
    if podman.output(&args::image_exists(image))?.status.success() {
        return Ok(false);
    }
    let hash = image.rsplit(':').next().unwrap_or_default();
    let extra: Vec<String> = std::env::var(BUILD_ARGS)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let containerfile = recipe.dir.join(CONTAINERFILE);
    crate::launch::progress(&format!(
        "building {image} from {} (once: later runs reuse it until the recipe changes)",
        containerfile.display()
    ));
    let command = args::build(
        image,
        HASH_LABEL,
        hash,
        &recipe.dir.to_string_lossy(),
        &containerfile.to_string_lossy(),
        &extra,
    );
    let code = podman.passthrough(&command)?;
    if code != 0 {
        return Err(Error::RecipeBuild {
            dir: recipe.dir.clone(),
            status: format!("podman build exited with {code}"),
            fix: format!(
                "read the build's output above and correct {} (a build reaches the network as podman's builds do, not through the sentry; behind a proxy with its own CA, hand it to the build with {BUILD_ARGS}, see README)",
                containerfile.display()
            ),
        });
    }
    Ok(true)
}

/// Refuses what a Containerfile's `RUN` could ask of the build beyond its
/// network and its folder: another network (`--network=host`: the host's
/// loopback services), `--security=insecure`, a `--mount` of the build
/// cache shared with the user's other builds or of another image
/// (`type=cache`, `from=`). Instructions are read as the builder reads
/// them: continued lines joined, comments skipped, case ignored.
pub fn containerfile_allowed(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut instruction = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if instruction.is_empty() && t.starts_with('#') {
            continue;
        }
        instruction.push_str(t.strip_suffix('\\').unwrap_or(t));
        instruction.push(' ');
        if t.ends_with('\\') {
            continue;
        }
        let words: Vec<String> = instruction
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        instruction.clear();
        // ONBUILD RUN runs in a later build, but is read here all the same.
        let run = match words.first().map(String::as_str) {
            Some("onbuild") => &words[1.min(words.len())..],
            _ => &words[..],
        };
        if run.first().map(String::as_str) != Some("run") {
            continue;
        }
        for flag in run[1..].iter().take_while(|w| w.starts_with("--")) {
            let bad = flag.starts_with("--network")
                || flag.starts_with("--security")
                || flag.starts_with("--device")
                || (flag.starts_with("--mount")
                    && (flag.contains("type=cache") || flag.contains("from=")));
            if bad {
                return Err(format!(
                    "{} asks `RUN {flag}`: more of this machine than a recipe's build gets",
                    path.display()
                ));
            }
        }
    }
    Ok(())
}

/// A built-in recipe's name: lowercase letters, digits and `-`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The folder of rbm's own recipes, if rbm's files are at hand.
fn shipped_dir(places: &Places) -> Option<PathBuf> {
    places.shipped.as_ref().map(|s| s.root.join("recipes"))
}

/// The recipes rbm ships: name and the profile's description, sorted.
pub fn built_in(places: &Places) -> Vec<(String, String)> {
    let Some(dir) = shipped_dir(places) else {
        return vec![];
    };
    let mut found: Vec<(String, String)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().join(CONTAINERFILE).is_file())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let text = std::fs::read_to_string(e.path().join(PROFILE)).ok()?;
            let description = text
                .parse::<toml::Table>()
                .ok()
                .and_then(|t| t.get("description")?.as_str().map(str::to_string))
                .unwrap_or_default();
            Some((name, description))
        })
        .collect();
    found.sort();
    found
}

/// Refuses a workspace that would hand the agent more than a project:
/// the root folder, or the user's home or a folder holding it (shell
/// startup files, ~/.ssh, ~/.config: what runs on the host next).
pub fn check_workspace(arg: &str, dir: &Path, homes: &[PathBuf]) -> Result<(), Error> {
    let whole = dir.parent().is_none()
        || homes
            .iter()
            .filter_map(|h| h.canonicalize().ok())
            .any(|h| h.starts_with(dir));
    if whole {
        return Err(Error::Recipe {
            arg: arg.into(),
            what: format!(
                "the workspace {} holds your home folder (its shell startup files, ~/.ssh, ~/.config), which the agent could rewrite for the host to run",
                dir.display()
            ),
            fix: "run it in a project's folder, or name one: `rbm-launch run RECIPE ~/src/project`".into(),
        });
    }
    Ok(())
}

/// The folder `dir` mounted read-write at [`WORKSPACE`] and the bottle's
/// working directory there, unless the recipe's profile says otherwise:
/// the project the agent works on. Outside the recipe's folder by nature
/// (`outside = true`), so it is listed and needs a yes for this folder.
pub fn add_workspace(loaded: &mut Loaded, dir: &Path) -> Result<(), Error> {
    nothing_at_the_workspace(loaded)?;
    loaded.workspace = Some(dir.to_path_buf());
    let b = &mut loaded.profile.bottle;
    b.volumes.push(Volume {
        host: dir.to_string_lossy().into_owned(),
        bottle: WORKSPACE.into(),
        read_only: false,
        outside: true,
    });
    b.workdir.get_or_insert_with(|| WORKSPACE.into());
    Ok(())
}

/// The Podman volume `name` as the workspace, instead of a folder (for a
/// remote Podman that shares none of this machine's): created by Podman
/// if missing, the bottle user's.
pub fn add_workspace_volume(loaded: &mut Loaded, arg: &str, name: &str) -> Result<(), Error> {
    let valid = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !valid {
        return Err(Error::Recipe {
            arg: arg.into(),
            what: format!("{name:?} is not a Podman volume name"),
            fix: "name the volume with letters, digits, `_`, `.` and `-`, starting with a letter or digit".into(),
        });
    }
    nothing_at_the_workspace(loaded)?;
    loaded.workspace_volume = Some(name.into());
    loaded
        .profile
        .bottle
        .workdir
        .get_or_insert_with(|| WORKSPACE.into());
    Ok(())
}

fn nothing_at_the_workspace(loaded: &Loaded) -> Result<(), Error> {
    let b = &loaded.profile.bottle;
    let under = |p: &str| Path::new(p).starts_with(WORKSPACE);
    if let Some(v) = b.volumes.iter().find(|v| under(&v.bottle)) {
        // The workspace is the folder the user names, nothing else: a
        // recipe's own volume there would stand in for it unseen.
        return Err(ProfileError::Invalid {
            file: loaded.path.clone(),
            problems: vec![rbm_profile::Problem {
                field: "bottle.volumes".into(),
                message: format!(
                    "{} -> {} is at or under {WORKSPACE}, where `rbm-launch run` mounts the folder you name",
                    v.host, v.bottle
                ),
                fix: format!("mount it elsewhere than {WORKSPACE}"),
            }],
        }
        .into());
    }
    Ok(())
}

/// Every file under `root/rel`, relative to `root`; a symbolic link is a
/// file (its target is what `hash` reads), never a folder to walk into,
/// so a link to a parent folder ends.
fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let rel = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            walk(root, &rel, out)?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

/// What `hash` takes of a recipe file: its bytes, or a link's target.
fn contents(path: &Path) -> std::io::Result<Vec<u8>> {
    if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Ok(std::fs::read_link(path)?
            .to_string_lossy()
            .into_owned()
            .into_bytes());
    }
    std::fs::read(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE_TEXT: &str = "moniker = \"agent\"\ndescription = \"an agent\"\n[bottle]\ncommand = [\"sleep\", \"infinity\"]\nuser = \"1000:1000\"\nattach = [\"agent\"]\n[enclave]\nsubnet = \"10.243.0.0/24\"\nsentry_ip = \"10.243.0.2\"\nbottle_ip = \"10.243.0.3\"\n[uplink]\ndns = \"allowlist\"\naccess = \"allowlist\"\ndomains = [\"api.example.com:443\"]\n";

    fn shipped_with(recipe: &str, profile: &str) -> (tempfile::TempDir, Places) {
        let t = tempfile::tempdir().unwrap();
        let rbm = t.path().join("rbm");
        std::fs::create_dir_all(rbm.join("profiles")).unwrap();
        std::fs::create_dir_all(rbm.join("scripts")).unwrap();
        std::fs::write(rbm.join("scripts/podman5"), "").unwrap();
        let r = rbm.join("recipes").join(recipe);
        std::fs::create_dir_all(&r).unwrap();
        std::fs::write(r.join(CONTAINERFILE), "FROM x\n").unwrap();
        std::fs::write(r.join(PROFILE), profile).unwrap();
        let cwd = t.path().join("work");
        std::fs::create_dir_all(&cwd).unwrap();
        let places = Places::new(cwd, None, Some(&rbm));
        (t, places)
    }

    #[test]
    fn a_built_in_recipe_loads_with_its_image_named_by_its_contents() {
        let (_t, places) = shipped_with("agent", PROFILE_TEXT);
        let r = Recipe::named("agent", &places).unwrap();
        let l = r.load(&places).unwrap();
        let hash = r.hash().unwrap();
        assert_eq!(hash.len(), 64);
        assert_eq!(
            l.profile.bottle.image,
            format!("localhost/rbm-recipe-agent:{hash}")
        );
        assert_eq!(
            l.profile.bottle.attach.as_deref(),
            Some(&["agent".to_string()][..])
        );
        assert_eq!(l.profile.bottle.user.unwrap().to_string(), "1000:1000");
        // The sentry's text names the image too.
        assert!(l.text.contains(&l.profile.bottle.image));
        assert_eq!(
            built_in(&places),
            [("agent".to_string(), "an agent".to_string())]
        );
        // The profile is not the image: editing it keeps the image.
        std::fs::write(r.dir.join(PROFILE), PROFILE_TEXT.replace("an agent", "b")).unwrap();
        assert_eq!(r.hash().unwrap(), hash);
        std::fs::write(r.dir.join(CONTAINERFILE), "FROM y\n").unwrap();
        assert_ne!(r.hash().unwrap(), hash);
    }

    #[test]
    fn a_recipe_that_names_an_image_or_lacks_a_file_is_refused_with_the_fix() {
        let (_t, places) = shipped_with(
            "agent",
            &PROFILE_TEXT.replace("[bottle]\n", "[bottle]\nimage = \"x\"\n"),
        );
        let e = Recipe::named("agent", &places)
            .unwrap()
            .load(&places)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bottle.image") && e.contains("remove it"), "{e}");
        let mine = places.cwd.join("mine");
        std::fs::create_dir_all(&mine).unwrap();
        std::fs::write(mine.join(PROFILE), PROFILE_TEXT).unwrap();
        let e = Recipe::find("./mine", &places).unwrap_err().to_string();
        assert!(e.contains("has no Containerfile"), "{e}");
        let e = Recipe::named("nothing", &places).unwrap_err().to_string();
        assert!(e.contains("built in: agent"), "{e}");
        // A bare name is never a folder of the current directory.
        std::fs::write(mine.join(CONTAINERFILE), "FROM x\n").unwrap();
        assert!(Recipe::find("mine", &places).unwrap().is_none());
        assert!(Recipe::find("./mine", &places).unwrap().is_some());
        // Nor is a profile name a recipe.
        assert!(Recipe::find("demo.toml", &places).unwrap().is_none());
    }

    #[test]
    fn a_containerfile_may_not_ask_the_build_for_more_of_the_machine() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join(CONTAINERFILE);
        let check = |text: &str| {
            std::fs::write(&f, text).unwrap();
            containerfile_allowed(&f)
        };
        assert!(check(
            "FROM x\nRUN --mount=type=bind,source=a,target=/a npm ci\nRUN echo --network=host\n"
        )
        .is_ok());
        for bad in [
            "FROM x\nRUN --network=host curl 127.0.0.1\n",
            "FROM x\nrun   --NETWORK host true\n",
            "FROM x\nRUN \\\n  --network=host true\n",
            "FROM x\nRUN --mount=type=cache,target=/root/.npm npm ci\n",
            "FROM x\nRUN --mount=from=localhost/rbm-sentry,source=/,target=/s true\n",
            "FROM x\nRUN --security=insecure true\n",
            "FROM x\nONBUILD RUN --network=host true\n",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_credential_file_in_the_recipe_or_a_volume_at_the_workspace_is_refused() {
        let with_file = PROFILE_TEXT.to_string()
            + "[[credential]]\nenv = \"K\"\nfrom = \"file:key.txt\"\nhosts = [\"api.example.com\"]\n";
        let (_t, places) = shipped_with("agent", &with_file);
        let r = Recipe::named("agent", &places).unwrap();
        std::fs::write(r.dir.join("key.txt"), "secret").unwrap();
        let e = r.load(&places).unwrap_err().to_string();
        assert!(
            e.contains("recipe's folder") && e.contains("build could read"),
            "{e}"
        );
        let ws_volume = PROFILE_TEXT.replace(
            "attach = [\"agent\"]\n",
            "attach = [\"agent\"]\nvolumes = [{ host = \"/\", bottle = \"/workspace/x\", outside = true, read_only = true }]\n",
        );
        let (_t, places) = shipped_with("agent", &ws_volume);
        let mut l = Recipe::named("agent", &places)
            .unwrap()
            .load(&places)
            .unwrap();
        let e = add_workspace(&mut l, Path::new("/p"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/workspace") && e.contains("bottle.volumes"),
            "{e}"
        );
        // What it takes names the build.
        let l = Recipe::named("agent", &places)
            .unwrap()
            .load(&places)
            .unwrap();
        let takes = crate::takes::Takes::of(&l).unwrap();
        assert!(takes.needs_yes());
        assert!(takes.lines()[0].starts_with("build"), "{:?}", takes.lines());
    }

    #[test]
    fn a_linked_containerfile_is_no_recipe() {
        let (_t, places) = shipped_with("agent", PROFILE_TEXT);
        let r = Recipe::named("agent", &places).unwrap();
        std::fs::rename(r.dir.join(CONTAINERFILE), r.dir.join("real")).unwrap();
        std::os::unix::fs::symlink("real", r.dir.join(CONTAINERFILE)).unwrap();
        let e = Recipe::named("agent", &places).unwrap_err().to_string();
        assert!(e.contains("not a link"), "{e}");
    }

    #[test]
    fn a_workspace_holding_the_home_folder_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("home/me");
        std::fs::create_dir_all(home.join("src/p")).unwrap();
        let home = home.canonicalize().unwrap();
        let ok = |d: &Path| check_workspace("r", d, std::slice::from_ref(&home)).is_ok();
        assert!(ok(&home.join("src/p")));
        assert!(!ok(&home));
        assert!(!ok(home.parent().unwrap()));
        assert!(!ok(Path::new("/")));
        assert!(check_workspace("r", Path::new("/"), &[]).is_err());
    }

    #[test]
    fn a_link_in_a_recipe_is_hashed_as_a_link() {
        let (_t, places) = shipped_with("agent", PROFILE_TEXT);
        let r = Recipe::named("agent", &places).unwrap();
        let before = r.hash().unwrap();
        std::os::unix::fs::symlink("..", r.dir.join("up")).unwrap();
        let after = r.hash().unwrap();
        assert_ne!(before, after);
    }

    #[test]
    fn a_podman_volume_can_be_the_workspace() {
        let (_t, places) = shipped_with("agent", PROFILE_TEXT);
        let mut l = Recipe::named("agent", &places)
            .unwrap()
            .load(&places)
            .unwrap();
        assert!(add_workspace_volume(&mut l, "agent", "-v").is_err());
        assert!(add_workspace_volume(&mut l, "agent", "a/b").is_err());
        add_workspace_volume(&mut l, "agent", "my-project_1.0").unwrap();
        assert!(l.profile.bottle.volumes.is_empty());
        assert_eq!(l.profile.bottle.workdir.as_deref(), Some(WORKSPACE));
        let takes = crate::takes::Takes::of(&l).unwrap();
        assert!(takes
            .lines()
            .iter()
            .any(|t| t.contains("Podman volume my-project_1.0 -> /workspace")));
    }

    #[test]
    fn the_workspace_is_mounted_and_worked_in() {
        let (_t, places) = shipped_with("agent", PROFILE_TEXT);
        let mut l = Recipe::named("agent", &places)
            .unwrap()
            .load(&places)
            .unwrap();
        add_workspace(&mut l, Path::new("/home/me/project")).unwrap();
        let v = &l.profile.bottle.volumes[0];
        assert_eq!(
            (v.host.as_str(), v.bottle.as_str(), v.read_only, v.outside),
            ("/home/me/project", WORKSPACE, false, true)
        );
        assert_eq!(l.profile.bottle.workdir.as_deref(), Some(WORKSPACE));
    }
}
