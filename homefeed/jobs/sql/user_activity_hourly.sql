-- Per user, activity in one event hour (:dt, :hr). sessions ~ distinct feed requests served.
WITH ev AS (
    SELECT user_id, 'impression' AS kind, request_id FROM impression WHERE dt = :dt AND hr = :hr
    UNION ALL SELECT user_id, 'click' AS kind, CAST(NULL AS VARCHAR) AS request_id
        FROM click WHERE dt = :dt AND hr = :hr
    UNION ALL SELECT user_id, 'closeup' AS kind, CAST(NULL AS VARCHAR) AS request_id
        FROM closeup WHERE dt = :dt AND hr = :hr
    UNION ALL SELECT user_id, 'save' AS kind, CAST(NULL AS VARCHAR) AS request_id
        FROM save WHERE dt = :dt AND hr = :hr
    UNION ALL SELECT user_id, 'hide' AS kind, CAST(NULL AS VARCHAR) AS request_id
        FROM hide WHERE dt = :dt AND hr = :hr
    UNION ALL SELECT user_id, 'follow' AS kind, CAST(NULL AS VARCHAR) AS request_id
        FROM follow WHERE dt = :dt AND hr = :hr
    UNION ALL SELECT user_id, 'pin_create' AS kind, CAST(NULL AS VARCHAR) AS request_id
        FROM pin_create WHERE dt = :dt AND hr = :hr
)
SELECT
    user_id,
    COUNT(CASE WHEN kind = 'impression' THEN 1 END) AS impressions,
    COUNT(CASE WHEN kind = 'click' THEN 1 END) AS clicks,
    COUNT(CASE WHEN kind = 'closeup' THEN 1 END) AS closeups,
    COUNT(CASE WHEN kind = 'save' THEN 1 END) AS saves,
    COUNT(CASE WHEN kind = 'hide' THEN 1 END) AS hides,
    COUNT(CASE WHEN kind = 'follow' THEN 1 END) AS follows,
    COUNT(CASE WHEN kind = 'pin_create' THEN 1 END) AS pin_creates,
    COUNT(DISTINCT request_id) AS sessions
FROM ev
GROUP BY user_id
ORDER BY user_id
