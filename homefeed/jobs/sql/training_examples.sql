-- One row per impression of day :dt: labels from what the user did to the pin in the
-- :label_window_seconds after it, and features as of the impression time (point in time):
-- * pin stats from the previous day's pin_stats_daily (view prev_pin_stats_daily);
-- * the user's counts from raw events in [start of :lookback_start_dt, impression time),
--   strictly before the impression (events at the same instant are excluded);
-- * topic affinity: the previous day's user_topic_interest (view prev_user_topic_interest)
--   summed over the pin's topics from its latest pin_create at or before the impression.
-- No feature reads an event after the impression; only the labels do.
WITH imp AS (
    SELECT
        event_id, user_id, pin_id, request_id, position, surface, candidate_source,
        model_version, event_time
    FROM impression
    WHERE dt = :dt
),
acts AS (
    SELECT user_id, pin_id, event_time, 'click' AS kind
        FROM click WHERE dt >= :dt AND dt <= :label_end_dt
    UNION ALL SELECT user_id, pin_id, event_time, 'save' AS kind
        FROM save WHERE dt >= :dt AND dt <= :label_end_dt
    UNION ALL SELECT user_id, pin_id, event_time, 'hide' AS kind
        FROM hide WHERE dt >= :dt AND dt <= :label_end_dt
),
labels AS (
    SELECT
        i.event_id,
        MAX(CASE WHEN a.kind = 'click' THEN 1 ELSE 0 END) AS label_click,
        MAX(CASE WHEN a.kind = 'save' THEN 1 ELSE 0 END) AS label_save,
        MAX(CASE WHEN a.kind = 'hide' THEN 1 ELSE 0 END) AS label_hide
    FROM imp AS i
    LEFT JOIN acts AS a
        ON a.user_id = i.user_id AND a.pin_id = i.pin_id
        AND a.event_time >= i.event_time
        AND a.event_time < i.event_time + INTERVAL :label_window_seconds SECOND
    GROUP BY i.event_id
),
hist AS (
    SELECT event_id, user_id, event_time, dt, 1 AS n_imp, 0 AS n_click, 0 AS n_save, 0 AS n_hide
        FROM impression WHERE dt >= :lookback_start_dt AND dt <= :dt
    UNION ALL SELECT event_id, user_id, event_time, dt, 0, 1, 0, 0
        FROM click WHERE dt >= :lookback_start_dt AND dt <= :dt
    UNION ALL SELECT event_id, user_id, event_time, dt, 0, 0, 1, 0
        FROM save WHERE dt >= :lookback_start_dt AND dt <= :dt
    UNION ALL SELECT event_id, user_id, event_time, dt, 0, 0, 0, 1
        FROM hide WHERE dt >= :lookback_start_dt AND dt <= :dt
),
running AS (
    -- Running totals up to and including the instant, minus the instant itself: strictly before.
    SELECT
        event_id, dt, n_imp,
        SUM(n_imp) OVER w_upto - SUM(n_imp) OVER w_same AS user_impressions,
        SUM(n_click) OVER w_upto - SUM(n_click) OVER w_same AS user_clicks,
        SUM(n_save) OVER w_upto - SUM(n_save) OVER w_same AS user_saves,
        SUM(n_hide) OVER w_upto - SUM(n_hide) OVER w_same AS user_hides
    FROM hist
    WINDOW
        w_upto AS (
            PARTITION BY user_id ORDER BY event_time
            RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ),
        w_same AS (PARTITION BY user_id, event_time)
),
user_feats AS (
    SELECT event_id, user_impressions, user_clicks, user_saves, user_hides
    FROM running
    WHERE n_imp = 1 AND dt = :dt
),
pin_topics_at AS (
    SELECT event_id, user_id, topics
    FROM (
        SELECT
            i.event_id, i.user_id, pc.topics,
            ROW_NUMBER() OVER (
                PARTITION BY i.event_id
                ORDER BY pc.event_time DESC, pc._partition DESC, pc._offset DESC
            ) AS rn
        FROM imp AS i
        JOIN pin_create AS pc ON pc.pin_id = i.pin_id AND pc.event_time <= i.event_time
        WHERE pc.dt <= :dt
    ) AS ranked
    WHERE rn = 1
),
imp_topics AS (
    -- user_id travels with the topic so that the join below is one join on (user, topic).
    -- Joined through imp instead, the optimizer may join on topic alone first: impressions
    -- x users per topic rows (384M at 1M events, a 100+ GB spill at 10M).
    SELECT event_id, user_id, UNNEST(topics) AS topic FROM pin_topics_at
),
affinity AS (
    SELECT it.event_id, SUM(u.weight) AS topic_affinity
    FROM imp_topics AS it
    JOIN prev_user_topic_interest AS u ON u.user_id = it.user_id AND u.topic = it.topic
    GROUP BY it.event_id
)
SELECT
    i.event_id AS impression_id, i.user_id, i.pin_id, i.request_id, i.position, i.surface,
    i.candidate_source, i.model_version, i.event_time,
    CAST(l.label_click AS BIGINT) AS label_click,
    CAST(l.label_save AS BIGINT) AS label_save,
    CAST(l.label_hide AS BIGINT) AS label_hide,
    CAST(COALESCE(ps.impressions, 0) AS BIGINT) AS pin_impressions_prev_day,
    ps.click_rate AS pin_click_rate_prev_day,
    ps.save_rate AS pin_save_rate_prev_day,
    ps.hide_rate AS pin_hide_rate_prev_day,
    CAST(COALESCE(uf.user_impressions, 0) AS BIGINT) AS user_impressions_before,
    CAST(COALESCE(uf.user_clicks, 0) AS BIGINT) AS user_clicks_before,
    CAST(COALESCE(uf.user_saves, 0) AS BIGINT) AS user_saves_before,
    CAST(COALESCE(uf.user_hides, 0) AS BIGINT) AS user_hides_before,
    COALESCE(af.topic_affinity, 0.0) AS topic_affinity
FROM imp AS i
JOIN labels AS l ON l.event_id = i.event_id
LEFT JOIN prev_pin_stats_daily AS ps ON ps.pin_id = i.pin_id
LEFT JOIN user_feats AS uf ON uf.event_id = i.event_id
LEFT JOIN affinity AS af ON af.event_id = i.event_id
ORDER BY i.event_time, i.event_id
