//! The names learned addresses were answered for, with the ports they were
//! opened for, each kept once and in pieces: a piece is a label with its
//! dot (or part of a long label) and the piece after it, so every name
//! below one parent shares the parent's pieces, and a flood of fresh names
//! under one domain costs one small piece a name. A name's last piece is
//! its ports: a `PORTS` byte, which no name has (names are UTF-8), and the
//! ports' index, so that an address needs nothing but its name.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

/// Bytes one piece holds: the first label of most names fits (`www.`,
/// `e1234.`, `n12345.`), a longer one takes several pieces.
const PIECE: usize = 8;
/// A piece's holders count in `held`'s bits above `LEN_BITS`: a piece
/// has fewer than 2^28, the addresses remembered (at most `LEARNED_MAX`
/// and the expired kept) and the pieces before it (at most 127 for each
/// of their names).
const LEN_BITS: u32 = 4;
const ONE_HOLDER: u32 = 1 << LEN_BITS;
/// No piece: the end of a name, or of the free list.
const NONE: u32 = u32::MAX;
/// The first byte of a ports piece: never in UTF-8.
const PORTS: u8 = 0xFF;

/// A name and its ports in `Names`. Whoever has one holds a reference
/// to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NameId(u32);

impl NameId {
    pub(super) fn index(self) -> u32 {
        self.0
    }

    pub(super) fn from_index(index: u32) -> NameId {
        NameId(index)
    }
}

/// A part of a name, and the rest of it: 16 bytes.
#[derive(Debug, Clone, Copy)]
struct Piece {
    /// The piece after this one (`NONE`: the name ends here); in a free
    /// piece, the next free one.
    next: u32,
    /// How many hold it, the pieces before it (whose `next` it is) and
    /// the holders of the names that start with it (0: free), above
    /// `LEN_BITS`; how many of `bytes` it has, below.
    held: u32,
    bytes: [u8; PIECE],
}

const _: () = assert!(size_of::<Piece>() == 16);

impl Piece {
    fn bytes(&self) -> &[u8] {
        &self.bytes[..(self.held % ONE_HOLDER) as usize]
    }

    fn holders(&self) -> u32 {
        self.held >> LEN_BITS
    }

    /// The ports this piece stands for, if it is a ports piece.
    fn ports(&self) -> Option<u16> {
        match self.bytes() {
            [PORTS, low, high] => Some(u16::from_le_bytes([*low, *high])),
            _ => None,
        }
    }
}

/// Every name held, by pieces.
#[derive(Debug, Default)]
pub(super) struct Names {
    pieces: Vec<Piece>,
    /// The first free piece, `NONE` if none.
    free: Option<u32>,
    /// The pieces in use, found by their bytes and the piece after them.
    index: HashTable<u32>,
    hasher: RandomState,
}

/// `name`'s pieces, its last first: each label with its dot, in parts of
/// at most `PIECE` bytes.
fn pieces(name: &[u8]) -> impl Iterator<Item = &[u8]> {
    name.split_inclusive(|b| *b == b'.')
        .rev()
        .flat_map(|label| label.chunks(PIECE).rev())
}

impl Names {
    /// `name` with `ports` (an index the caller keeps), held once more.
    pub(super) fn intern(&mut self, name: &str, ports: u16) -> NameId {
        let [low, high] = ports.to_le_bytes();
        let mut at = self.piece(&[PORTS, low, high], NONE);
        for piece in pieces(name.as_bytes()) {
            at = self.piece(piece, at);
        }
        self.hold(NameId(at));
        NameId(at)
    }

    /// `id` held once more.
    pub(super) fn hold(&mut self, id: NameId) {
        self.pieces[id.0 as usize].held += ONE_HOLDER;
    }

    /// Lets go of `id`: its pieces no name holds any more are free. The
    /// ports index, if no name has those ports any more.
    pub(super) fn release(&mut self, id: NameId) -> Option<u16> {
        let mut at = id.0;
        let mut freed = None;
        while at != NONE {
            let piece = &mut self.pieces[at as usize];
            piece.held -= ONE_HOLDER;
            if piece.holders() > 0 {
                break;
            }
            freed = piece.ports();
            let (freed, next) = (*piece, piece.next);
            let hash = self.hash(freed.bytes(), next);
            if let Ok(entry) = self.index.find_entry(hash, |i| *i == at) {
                entry.remove();
            }
            self.pieces[at as usize].next = self.free.unwrap_or(NONE);
            self.free = Some(at);
            at = next;
        }
        freed
    }

    /// The name `id` stands for.
    pub(super) fn name(&self, id: NameId) -> String {
        let mut bytes = Vec::new();
        let mut at = id.0;
        while at != NONE {
            let piece = &self.pieces[at as usize];
            if piece.ports().is_some() {
                break;
            }
            bytes.extend_from_slice(piece.bytes());
            at = piece.next;
        }
        // Pieces only cut a name that was whole: it is UTF-8 again.
        String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    /// The ports index `id` was interned with.
    pub(super) fn ports(&self, id: NameId) -> u16 {
        let mut piece = &self.pieces[id.0 as usize];
        while piece.next != NONE {
            piece = &self.pieces[piece.next as usize];
        }
        // Every name ends in its ports.
        piece.ports().unwrap_or_default()
    }

    /// How many pieces are in use.
    #[cfg(test)]
    pub(super) fn pieces_held(&self) -> usize {
        self.index.len()
    }

    fn hash(&self, bytes: &[u8], next: u32) -> u64 {
        self.hasher.hash_one((bytes, next))
    }

    /// The piece of `bytes` followed by `next`, made if there is none
    /// (with no holder yet).
    fn piece(&mut self, bytes: &[u8], next: u32) -> u32 {
        let hash = self.hash(bytes, next);
        let Names {
            pieces,
            free,
            index,
            hasher,
        } = self;
        let same = |i: &u32| {
            let piece = &pieces[*i as usize];
            piece.next == next && piece.bytes() == bytes
        };
        if let Some(i) = index.find(hash, same) {
            return *i;
        }
        let mut piece = Piece {
            next,
            held: bytes.len() as u32,
            bytes: [0; PIECE],
        };
        piece.bytes[..bytes.len()].copy_from_slice(bytes);
        let at = match free.take() {
            Some(at) => {
                let slot = &mut pieces[at as usize];
                *free = Some(slot.next).filter(|n| *n != NONE);
                *slot = piece;
                at
            }
            None => {
                pieces.push(piece);
                (pieces.len() - 1) as u32
            }
        };
        if next != NONE {
            pieces[next as usize].held += ONE_HOLDER;
        }
        index.insert_unique(hash, at, |i| {
            let piece = &pieces[*i as usize];
            hasher.hash_one((piece.bytes(), piece.next))
        });
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_under_one_parent_share_its_pieces() {
        let mut names = Names::default();
        let a = names.intern("n1.flood.example.test", 0);
        assert_eq!(names.pieces_held(), 5, "4 and the ports");
        let b = names.intern("n2.flood.example.test", 0);
        assert_eq!(names.pieces_held(), 6, "one piece more");
        assert_eq!(names.name(a), "n1.flood.example.test");
        assert_eq!(names.name(b), "n2.flood.example.test");
        assert_eq!(names.intern("n1.flood.example.test", 0), a, "the same name");
        assert_eq!(names.pieces_held(), 6);
        let other = names.intern("n1.flood.example.test", 7);
        assert_ne!(other, a, "other ports");
        assert_eq!((names.ports(a), names.ports(other)), (0, 7));
        assert_eq!(names.name(other), "n1.flood.example.test");
    }

    #[test]
    fn a_name_comes_back_whole_however_it_was_cut() {
        let mut names = Names::default();
        for name in [
            "",
            ".",
            "test",
            "a..b.",
            "a-label-of-thirty-one-bytes-xyz.example.test",
            "ünïcödé-läbel-longer-than-a-piece.test",
        ] {
            let id = names.intern(name, u16::MAX);
            assert_eq!(names.name(id), name);
            assert_eq!(names.ports(id), u16::MAX);
        }
    }

    #[test]
    fn a_name_no_one_holds_frees_its_pieces_for_the_next() {
        let mut names = Names::default();
        let a = names.intern("a.example.test", 3);
        let b = names.intern("b.example.test", 3);
        names.hold(a);
        assert_eq!(names.release(a), None);
        assert_eq!(names.pieces_held(), 5, "still held once");
        assert_eq!(names.release(a), None, "b still has the ports");
        assert_eq!(names.pieces_held(), 4, "a. is free");
        assert_eq!(names.release(b), Some(3), "no name has the ports");
        assert_eq!(names.pieces_held(), 0);
        let c = names.intern("c.example.test", 4);
        assert_eq!(names.name(c), "c.example.test");
        assert_eq!(names.pieces.len(), 5, "made of the freed pieces");
    }
}
