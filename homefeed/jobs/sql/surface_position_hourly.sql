-- Reporting by surface and position bucket for one event hour (:dt, :hr). An impression counts
-- as clicked (saved) when the same user clicked (saved) the same pin on the same surface later
-- in the same hour; the hour boundary cuts a few conversions, which a report accepts.
WITH imp AS (
    SELECT
        event_id, user_id, pin_id, surface, event_time,
        CASE
            WHEN position < 1 THEN '00'
            WHEN position < 4 THEN '01-03'
            WHEN position < 10 THEN '04-09'
            WHEN position < 25 THEN '10-24'
            ELSE '25+'
        END AS position_bucket
    FROM impression
    WHERE dt = :dt AND hr = :hr
),
act AS (
    SELECT user_id, pin_id, surface, event_time, 'click' AS kind
        FROM click WHERE dt = :dt AND hr = :hr
    UNION ALL SELECT user_id, pin_id, surface, event_time, 'save' AS kind
        FROM save WHERE dt = :dt AND hr = :hr
),
flags AS (
    SELECT
        imp.event_id, imp.surface, imp.position_bucket,
        MAX(CASE WHEN act.kind = 'click' THEN 1 ELSE 0 END) AS clicked,
        MAX(CASE WHEN act.kind = 'save' THEN 1 ELSE 0 END) AS saved
    FROM imp
    LEFT JOIN act
        ON act.user_id = imp.user_id AND act.pin_id = imp.pin_id
        AND act.surface = imp.surface AND act.event_time >= imp.event_time
    GROUP BY imp.event_id, imp.surface, imp.position_bucket
)
SELECT
    surface, position_bucket,
    COUNT(*) AS impressions,
    COUNT(CASE WHEN clicked = 1 THEN 1 END) AS clicked_impressions,
    COUNT(CASE WHEN saved = 1 THEN 1 END) AS saved_impressions,
    CAST(COUNT(CASE WHEN clicked = 1 THEN 1 END) AS DOUBLE) / COUNT(*) AS ctr,
    CAST(COUNT(CASE WHEN saved = 1 THEN 1 END) AS DOUBLE) / COUNT(*) AS save_rate
FROM flags
GROUP BY surface, position_bucket
ORDER BY surface, position_bucket
