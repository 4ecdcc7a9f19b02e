/**
 * IDs: `<prefix>_` + 10 characters of millisecond time + 16 random ones (Crockford base32).
 * The random part is drawn from a pooled buffer refilled 4 KiB at a time; thousands made
 * in one millisecond (many pool refills) must still all differ, and later IDs sort after.
 */
import { newId } from "../src/domain/ids";

test("5,000 IDs made in one millisecond are well-formed and all different", () => {
  const at = Date.UTC(2026, 11, 6);
  const ids = Array.from({ length: 5000 }, () => newId("job", at));
  for (const id of ids) expect(id).toMatch(/^job_[0-9abcdefghjkmnpqrstvwxyz]{26}$/);
  expect(new Set(ids).size).toBe(ids.length);
  // The time part is the same; the random parts differ, also across refills of the pool.
  expect(new Set(ids.map((id) => id.slice(4, 14))).size).toBe(1);
  expect(new Set(ids.map((id) => id.slice(14))).size).toBe(ids.length);
});

test("an ID made a millisecond later sorts after every ID of the millisecond before", () => {
  const at = Date.UTC(2026, 11, 6, 12);
  const earlier = Array.from({ length: 1000 }, () => newId("thread", at));
  const later = newId("thread", at + 1);
  for (const id of earlier) expect(id < later).toBe(true);
});
