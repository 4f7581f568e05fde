-- Per pin, day :dt: counts and Bayesian-smoothed rates. Each rate is shrunk toward the day's
-- global rate with a prior worth :smoothing impressions: (k + m * g) / (n + m).
WITH ev AS (
    SELECT pin_id, 'impression' AS kind FROM impression WHERE dt = :dt
    UNION ALL SELECT pin_id, 'click' AS kind FROM click WHERE dt = :dt
    UNION ALL SELECT pin_id, 'save' AS kind FROM save WHERE dt = :dt
    UNION ALL SELECT pin_id, 'hide' AS kind FROM hide WHERE dt = :dt
),
counts AS (
    SELECT
        pin_id,
        COUNT(CASE WHEN kind = 'impression' THEN 1 END) AS impressions,
        COUNT(CASE WHEN kind = 'click' THEN 1 END) AS clicks,
        COUNT(CASE WHEN kind = 'save' THEN 1 END) AS saves,
        COUNT(CASE WHEN kind = 'hide' THEN 1 END) AS hides
    FROM ev
    GROUP BY pin_id
),
global_rates AS (
    SELECT
        COALESCE(CAST(SUM(clicks) AS DOUBLE) / NULLIF(SUM(impressions), 0), 0.0) AS g_click,
        COALESCE(CAST(SUM(saves) AS DOUBLE) / NULLIF(SUM(impressions), 0), 0.0) AS g_save,
        COALESCE(CAST(SUM(hides) AS DOUBLE) / NULLIF(SUM(impressions), 0), 0.0) AS g_hide
    FROM counts
)
SELECT
    c.pin_id, c.impressions, c.clicks, c.saves, c.hides,
    (c.clicks + :smoothing * g.g_click) / NULLIF(c.impressions + :smoothing, 0) AS click_rate,
    (c.saves + :smoothing * g.g_save) / NULLIF(c.impressions + :smoothing, 0) AS save_rate,
    (c.hides + :smoothing * g.g_hide) / NULLIF(c.impressions + :smoothing, 0) AS hide_rate
FROM counts AS c
CROSS JOIN global_rates AS g
ORDER BY c.pin_id
