-- The sandbox's stand-in for RDS's aws_commons (devops/sandbox/rds_extensions): the type RDS's aws_s3 takes.
CREATE TYPE aws_commons._s3_uri_1 AS (bucket text, file_path text, region text);
CREATE FUNCTION aws_commons.create_s3_uri(bucket text, file_path text, region text)
    RETURNS aws_commons._s3_uri_1 LANGUAGE sql IMMUTABLE
    AS $$ SELECT ROW(bucket, file_path, region)::aws_commons._s3_uri_1 $$;
