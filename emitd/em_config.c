/*
 * em_config.c - emitd's settings table (see em_config.h).
 *
 * Owns: defaults and bounds. Why these defaults: max_body 1 MiB holds a
 * batch of 1000 events of ~1 KiB; max_pending 100000 events waiting for the
 * broker is ~0.1 s of a broker's confirm rate and bounds the memory of
 * requests in flight (each holds its body) together with max_connections;
 * timeout 10 s is longer than a broker's GC pause, shorter than a backend's
 * HTTP client timeout (usually 30 s or more), so the backend hears 503, not
 * its own timeout. Must not: act on a setting.
 */
#include "em_config.h"

#include "mq_conn.h"
#include "log.h"

#define EM_OPT(sec, key, type, def, lo, hi, fl, field, help) \
  {sec, key, type, def, lo, hi, fl, offsetof(em_config, field), help},

const cfg_opt em_config_opts[] = {
    /* [amqp] is the gateway's and worker's section; emitd reads two keys
     * of it and skips the queue settings, which it has no use for. */
    EM_OPT("amqp", "url", CFG_STR, "amqp://guest:guest@127.0.0.1:5672/", 0, 0,
           CFG_SECRET | CFG_SHARED, amqp_url, MQ_URL_HELP)
    EM_OPT("amqp", "heartbeat", CFG_MS, "10s", 0, 600000, CFG_SHARED,
           amqp_heartbeat_ms, "AMQP heartbeat interval (0 disables)")
    LOG_CFG_OPT(em_config, log_level)
    EM_OPT("emit", "listen", CFG_STR, "127.0.0.1:8052", 0, 0, 0, listen,
           "address:port of the HTTP emit API, /metrics, /healthz and "
           "/readyz; a private address: backends only (DEPLOY.md)")
    EM_OPT("emit", "key_file", CFG_STR, "", 0, 0, 0, key_file,
           "file of API keys, lines \"NAME KEY\" (keys of 32 or more "
           "characters; not readable by others); reloaded on SIGHUP; required")
    EM_OPT("emit", "max_body", CFG_BYTES, "1MiB", 1024, 268435456, 0, max_body,
           "bytes of one request body; over it: 413")
    EM_OPT("emit", "max_events", CFG_INT, "1000", 1, 1000000, 0, max_events,
           "messages (event x group) of one request; over it: 413")
    EM_OPT("emit", "max_pending", CFG_INT, "100000", 1, 100000000, 0, max_pending,
           "messages of all requests together waiting for the broker's "
           "confirms; a request that would pass it: 503")
    EM_OPT("emit", "timeout", CFG_MS, "10s", 100, 600000, 0, timeout_ms,
           "longest wait for the broker's confirms of a request; past it: "
           "503 (the broker connection is then reopened)")
    EM_OPT("emit", "max_connections", CFG_INT, "1024", 1, 1000000, 0,
           max_connections,
           "open HTTP connections; more are answered 503 and closed")
    EM_OPT("emit", "request_timeout", CFG_MS, "10s", 100, 600000, 0,
           request_timeout_ms,
           "time to receive one whole request from its first byte (slow "
           "clients are closed)")
    EM_OPT("emit", "idle_timeout", CFG_MS, "60s", 100, 3600000, 0, idle_timeout_ms,
           "keep-alive: an idle connection is closed after this long")
};

const size_t em_config_n_opts = sizeof em_config_opts / sizeof em_config_opts[0];
