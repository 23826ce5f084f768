// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! A cheap hasher for the pool's own integer keys.
//!
//! The pool hashes a group key (already the output of `Peer::reuse_hash()`) and a connection
//! id (a file descriptor) on every put and take. Neither comes from the network, so the DoS
//! resistance of the standard library's SipHash buys nothing here, while it costs a few hundred
//! instructions per look-up.

use std::hash::{BuildHasherDefault, Hasher};

/// Multiplies each integer written into the state by an odd constant (Fibonacci hashing), so
/// that sequential ids and keys that differ only in a few bits spread over the high bits that
/// shard selection uses, while the low bits stay distinct for the maps' bucket index.
#[derive(Default, Clone, Copy)]
pub(crate) struct IntHasher(u64);

const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    // Keys of other types still hash correctly, one byte at a time.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(K);
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u64(u64::from(n as u32));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

pub(crate) type BuildIntHasher = BuildHasherDefault<IntHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    #[test]
    fn sequential_ids_spread_over_the_high_bits() {
        let build = BuildIntHasher::default();
        let mut shards = [0usize; 16];
        for fd in 0..1600i32 {
            let mut h = build.build_hasher();
            fd.hash(&mut h);
            shards[(h.finish() >> 60) as usize] += 1;
        }
        assert!(shards.iter().all(|&n| (50..=150).contains(&n)), "{shards:?}");
    }
}
