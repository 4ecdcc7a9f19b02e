-- A vector kept as its components' float4 bytes (big-endian, as float4send writes them)
-- instead of real[]: writing a real[] made PostgreSQL parse every component from decimal
-- text (the server printed them), ~0.3 ms of machine CPU a 384-dimension vector, and
-- loading a collection's index made it call array_send's per-element output once per
-- component. Now neither side converts a number (src/storage/postgres/vector-bytes.ts).
-- The conversion rewrites the table once: about two minutes per million 384-dimension
-- vectors on a 2-core machine (24.7 s for 200,000), while the instances starting wait.
CREATE FUNCTION k3_float4_bytes(a real[]) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(string_agg(float4send(coalesce(x, 0)), ''::bytea ORDER BY n), ''::bytea)
  FROM unnest(a) WITH ORDINALITY AS u(x, n)
$$;
ALTER TABLE vector_chunks ALTER COLUMN embedding TYPE bytea USING k3_float4_bytes(embedding);
DROP FUNCTION k3_float4_bytes(real[]);

-- The same function as migration 017's, but each p_embedding element is a vector's bytes as hex.
CREATE OR REPLACE FUNCTION k3_output_batch(
  p_first boolean, p_kind text, p_org text, p_bucket text, p_pipeline text, p_key text, p_job text, p_now bigint,
  p_idx integer[], p_content text[], p_embedding text[], p_start integer[], p_end integer[], p_page integer[],
  p_heading text[], p_data jsonb[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF p_kind = 'vector' THEN
    IF p_first THEN
      DELETE FROM vector_chunks WHERE org = p_org AND bucket = p_bucket AND pipeline_id = p_pipeline AND object_key = p_key;
    END IF;
    INSERT INTO vector_chunks (org, bucket, pipeline_id, object_key, chunk_index, content, embedding, job_id, created_at,
                               char_start, char_end, page, heading)
    SELECT p_org, p_bucket, p_pipeline, p_key, i, c, decode(e, 'hex'), p_job, p_now, cs, ce, pg, h
    FROM unnest(p_idx, p_content, p_embedding, p_start, p_end, p_page, p_heading) AS u(i, c, e, cs, ce, pg, h);
  ELSIF p_kind = 'warehouse' THEN
    IF p_first THEN
      DELETE FROM warehouse_rows WHERE org = p_org AND bucket = p_bucket AND pipeline_id = p_pipeline AND object_key = p_key;
    END IF;
    INSERT INTO warehouse_rows (org, bucket, pipeline_id, object_key, row_index, data, job_id, created_at)
    SELECT p_org, p_bucket, p_pipeline, p_key, i, d, p_job, p_now FROM unnest(p_idx, p_data) AS u(i, d);
  ELSE
    RAISE EXCEPTION 'unknown output kind %', p_kind;
  END IF;
END $$;

-- For people reading the table with psql: a stored vector as real[] again
-- (SELECT k3_vector(embedding) FROM vector_chunks …). Each component's sign, exponent and
-- mantissa from its four bytes; exact, zeros, subnormals, infinities and NaN included.
CREATE FUNCTION k3_vector(b bytea) RETURNS real[] LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT coalesce(array_agg(
    CASE WHEN e = 255 THEN (CASE WHEN m <> 0 THEN 'NaN' WHEN s = 1 THEN '-Infinity' ELSE 'Infinity' END)::real
         WHEN e = 0 THEN ((1 - 2 * s) * m * 2::float8 ^ -149)::real
         ELSE ((1 - 2 * s) * (8388608 + m) * 2::float8 ^ (e - 150))::real END
    ORDER BY i), '{}')
  FROM (SELECT i,
               get_byte(b, 4 * i) >> 7 AS s,
               ((get_byte(b, 4 * i) & 127) << 1) | (get_byte(b, 4 * i + 1) >> 7) AS e,
               ((get_byte(b, 4 * i + 1) & 127) << 16) | (get_byte(b, 4 * i + 2) << 8) | get_byte(b, 4 * i + 3) AS m
        FROM generate_series(0, length(b) / 4 - 1) AS i) AS f
$$;
