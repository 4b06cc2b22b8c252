//! The binaries that go into `FROM scratch` images are static: no program
//! interpreter, so they run in an empty root; those for this machine are
//! static-pie (position independent, ELF type DYN). (That they really run
//! there is proven by the end-to-end tests, whose sentry image holds only
//! rbm-agent; the arm64 agent's unit tests run under qemu-user.)

use anyhow::{ensure, Context, Result};
use rbm_tests::bins::{workspace_root, ARM64_AGENT};
use rbm_tests::static_bin;

const PT_INTERP: u32 = 3;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// (ELF type, machine, program header types) of a 64-bit little-endian ELF file.
fn elf_summary(bytes: &[u8]) -> Result<(u16, u16, Vec<u32>)> {
    ensure!(
        bytes.len() > 64 && &bytes[..4] == b"\x7fELF",
        "not an ELF file"
    );
    ensure!(
        bytes[4] == 2 && bytes[5] == 1,
        "not a 64-bit little-endian ELF"
    );
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (
        u64_at(0x20) as usize,
        u16_at(0x36) as usize,
        u16_at(0x38) as usize,
    );
    let types = (0..phnum)
        .map(|i| {
            let o = phoff + i * phentsize;
            bytes
                .get(o..o + 4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
                .context("program header past the end")
        })
        .collect::<Result<Vec<u32>>>()?;
    Ok((u16_at(0x10), u16_at(0x12), types))
}

#[test]
fn scratch_image_binaries_are_static_pie() -> Result<()> {
    for name in ["rbm-agent", "rbm-probe", "rbm-world"] {
        let path = static_bin(name)?;
        let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        let (elf_type, machine, headers) =
            elf_summary(&bytes).with_context(|| path.display().to_string())?;
        assert_eq!(elf_type, ET_DYN, "{name} is not position independent");
        assert_eq!(machine, EM_X86_64, "{name} is not an x86_64 binary");
        assert!(
            !headers.contains(&PT_INTERP),
            "{name} needs a dynamic loader, so it cannot run FROM scratch"
        );
    }
    Ok(())
}

#[test]
fn the_arm64_agent_is_a_static_aarch64_executable() -> Result<()> {
    let path = workspace_root().join(ARM64_AGENT);
    let bytes = std::fs::read(&path)
        .with_context(|| format!("read {} (built by scripts/build-static)", path.display()))?;
    let (_, machine, headers) = elf_summary(&bytes)?;
    assert_eq!(machine, EM_AARCH64, "{} is not for arm64", path.display());
    assert!(
        !headers.contains(&PT_INTERP),
        "the arm64 agent needs a dynamic loader, so it cannot run FROM scratch"
    );
    Ok(())
}

#[test]
fn a_dynamic_executable_is_recognised() -> Result<()> {
    // The check above must be able to fail: /bin/sh on the host is dynamic.
    let (_, _, headers) = elf_summary(&std::fs::read("/bin/sh")?)?;
    assert!(headers.contains(&PT_INTERP));
    Ok(())
}
