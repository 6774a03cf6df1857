-- The sandbox's stand-in for Neon's pg_session_jwt (devops/sandbox/neon_extensions): its one question.
CREATE FUNCTION session_user_id() RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT current_setting('request.jwt.claim.sub', true) $$;
