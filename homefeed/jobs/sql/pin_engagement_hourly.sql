-- Per pin, engagement in one event hour (:dt, :hr). Rates are per impression (NULL without one).
WITH ev AS (
    SELECT pin_id, 'impression' AS kind FROM impression WHERE dt = :dt AND hr = :hr
    UNION ALL SELECT pin_id, 'click' AS kind FROM click WHERE dt = :dt AND hr = :hr
    UNION ALL SELECT pin_id, 'closeup' AS kind FROM closeup WHERE dt = :dt AND hr = :hr
    UNION ALL SELECT pin_id, 'save' AS kind FROM save WHERE dt = :dt AND hr = :hr
    UNION ALL SELECT pin_id, 'hide' AS kind FROM hide WHERE dt = :dt AND hr = :hr
),
counts AS (
    SELECT
        pin_id,
        COUNT(CASE WHEN kind = 'impression' THEN 1 END) AS impressions,
        COUNT(CASE WHEN kind = 'click' THEN 1 END) AS clicks,
        COUNT(CASE WHEN kind = 'closeup' THEN 1 END) AS closeups,
        COUNT(CASE WHEN kind = 'save' THEN 1 END) AS saves,
        COUNT(CASE WHEN kind = 'hide' THEN 1 END) AS hides
    FROM ev
    GROUP BY pin_id
)
SELECT
    pin_id, impressions, clicks, closeups, saves, hides,
    CASE WHEN impressions > 0 THEN CAST(clicks AS DOUBLE) / impressions END AS click_rate,
    CASE WHEN impressions > 0 THEN CAST(saves AS DOUBLE) / impressions END AS save_rate
FROM counts
ORDER BY pin_id
