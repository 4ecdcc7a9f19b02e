;; The scan kernel of the vector index (scan-kernel.cjs loads its binary, scan-kernel.wasm;
;; `npm run generate` assembles it with wabt and a test checks the two agree).
;;
;; Rows hold 4-bit codes: 16 bytes per block of 32 dimensions, read as eight 16-bit lanes;
;; lane l holds, from its low nibble up, dimensions 8k + l of the block for k = 0..3, each
;; as code + 8 (0..15). The query is 16-bit, one per dimension in their natural order, so
;; nibble k of every lane meets query lanes 8k..8k+7 with one i32x4.dot_i16x8_s and no
;; unpacking but a shift and a mask.
;;
;; scan(codes, rows, blocks, query, inv, out, corr) writes, for each of `rows` rows (an
;; even number: two rows share each query load),
;;   out[r] = f32(dot(query, nibbles of row r) - corr) * inv[r]
;; where corr = 8 * sum(query) takes the +8 back out of every nibble and inv[r] is the
;; inverse norm of row r's codes: a score proportional to the cosine.
;;
;; above(scores, rows, floor, out) writes the numbers of the rows whose score is above
;; `floor` (never a NaN one) to out[], in order, and answers how many: the caller's top-k
;; keeps a floor and looks only at those, four scores compared at a time.
;;
;; All addresses are byte offsets into the imported memory.
(module
  (import "env" "memory" (memory 1))
  (func (export "scan")
    (param $codes i32) (param $rows i32) (param $blocks i32) (param $query i32)
    (param $inv i32) (param $out i32) (param $corr i32)
    (local $r i32) (local $b i32) (local $c i32) (local $q i32) (local $stride i32)
    (local $acc0 v128) (local $acc1 v128) (local $mask v128)
    (local $q0 v128) (local $q1 v128) (local $q2 v128) (local $q3 v128)
    (local $c0 v128) (local $c1 v128)
    (local.set $mask (i16x8.splat (i32.const 15)))
    (local.set $stride (i32.shl (local.get $blocks) (i32.const 4)))
    (local.set $c (local.get $codes))
    (block $done
      (loop $row
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $acc0 (v128.const i32x4 0 0 0 0))
        (local.set $acc1 (v128.const i32x4 0 0 0 0))
        (local.set $q (local.get $query))
        (local.set $b (local.get $blocks))
        (loop $block
          (local.set $q0 (v128.load (local.get $q)))
          (local.set $q1 (v128.load offset=16 (local.get $q)))
          (local.set $q2 (v128.load offset=32 (local.get $q)))
          (local.set $q3 (v128.load offset=48 (local.get $q)))
          ;; row r
          (local.set $c0 (v128.load (local.get $c)))
          (local.set $acc0 (i32x4.add (local.get $acc0) (i32x4.add
            (i32x4.add
              (i32x4.dot_i16x8_s (local.get $q0) (v128.and (local.get $c0) (local.get $mask)))
              (i32x4.dot_i16x8_s (local.get $q1) (v128.and (i16x8.shr_u (local.get $c0) (i32.const 4)) (local.get $mask))))
            (i32x4.add
              (i32x4.dot_i16x8_s (local.get $q2) (v128.and (i16x8.shr_u (local.get $c0) (i32.const 8)) (local.get $mask)))
              (i32x4.dot_i16x8_s (local.get $q3) (i16x8.shr_u (local.get $c0) (i32.const 12)))))))
          ;; row r + 1
          (local.set $c1 (v128.load (i32.add (local.get $c) (local.get $stride))))
          (local.set $acc1 (i32x4.add (local.get $acc1) (i32x4.add
            (i32x4.add
              (i32x4.dot_i16x8_s (local.get $q0) (v128.and (local.get $c1) (local.get $mask)))
              (i32x4.dot_i16x8_s (local.get $q1) (v128.and (i16x8.shr_u (local.get $c1) (i32.const 4)) (local.get $mask))))
            (i32x4.add
              (i32x4.dot_i16x8_s (local.get $q2) (v128.and (i16x8.shr_u (local.get $c1) (i32.const 8)) (local.get $mask)))
              (i32x4.dot_i16x8_s (local.get $q3) (i16x8.shr_u (local.get $c1) (i32.const 12)))))))
          (local.set $c (i32.add (local.get $c) (i32.const 16)))
          (local.set $q (i32.add (local.get $q) (i32.const 64)))
          (local.set $b (i32.sub (local.get $b) (i32.const 1)))
          (br_if $block (local.get $b)))
        ;; past row r + 1, whose blocks were read at a stride
        (local.set $c (i32.add (local.get $c) (local.get $stride)))
        (f32.store
          (i32.add (local.get $out) (i32.shl (local.get $r) (i32.const 2)))
          (f32.mul
            (f32.convert_i32_s (i32.sub
              (i32.add
                (i32.add (i32x4.extract_lane 0 (local.get $acc0)) (i32x4.extract_lane 1 (local.get $acc0)))
                (i32.add (i32x4.extract_lane 2 (local.get $acc0)) (i32x4.extract_lane 3 (local.get $acc0))))
              (local.get $corr)))
            (f32.load (i32.add (local.get $inv) (i32.shl (local.get $r) (i32.const 2))))))
        (f32.store offset=4
          (i32.add (local.get $out) (i32.shl (local.get $r) (i32.const 2)))
          (f32.mul
            (f32.convert_i32_s (i32.sub
              (i32.add
                (i32.add (i32x4.extract_lane 0 (local.get $acc1)) (i32x4.extract_lane 1 (local.get $acc1)))
                (i32.add (i32x4.extract_lane 2 (local.get $acc1)) (i32x4.extract_lane 3 (local.get $acc1))))
              (local.get $corr)))
            (f32.load offset=4 (i32.add (local.get $inv) (i32.shl (local.get $r) (i32.const 2))))))
        (local.set $r (i32.add (local.get $r) (i32.const 2)))
        (br $row))))
  (func (export "above")
    (param $scores i32) (param $rows i32) (param $floor f32) (param $out i32) (result i32)
    (local $i i32) (local $j i32) (local $stop i32) (local $n i32) (local $end i32) (local $f v128)
    (local.set $f (f32x4.splat (local.get $floor)))
    (local.set $end (i32.and (local.get $rows) (i32.const -4)))
    (block $done
      (loop $group
        ;; four at a time while four remain, then the last ones one by one
        (local.set $stop (i32.add (local.get $i) (i32.const 4)))
        (if (i32.gt_u (local.get $stop) (local.get $end))
          (then (local.set $stop (local.get $rows))))
        (br_if $done (i32.ge_u (local.get $i) (local.get $stop)))
        (if (i32.or
              (i32.gt_u (local.get $stop) (local.get $end))
              (v128.any_true (f32x4.gt
                (v128.load (i32.add (local.get $scores) (i32.shl (local.get $i) (i32.const 2))))
                (local.get $f))))
          (then
            (local.set $j (local.get $i))
            (block $checked
              (loop $one
                (br_if $checked (i32.ge_u (local.get $j) (local.get $stop)))
                (if (f32.gt (f32.load (i32.add (local.get $scores) (i32.shl (local.get $j) (i32.const 2)))) (local.get $floor))
                  (then
                    (i32.store (i32.add (local.get $out) (i32.shl (local.get $n) (i32.const 2))) (local.get $j))
                    (local.set $n (i32.add (local.get $n) (i32.const 1)))))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (br $one)))))
        (local.set $i (local.get $stop))
        (br $group)))
    (local.get $n))
)
