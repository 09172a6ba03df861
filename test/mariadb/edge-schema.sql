-- Edge cases for the MariaDB engine round trip: every column type, generated columns, engines,
-- partitions, sequences and every kind of stored object. Loaded into a scratch database by edge.test.ts.
SET NAMES utf8mb4;
SET time_zone = '+00:00';
SET sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION';

CREATE TABLE types (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  j JSON,
  d DECIMAL(65,30),
  b1 BIT(1),
  b64 BIT(64),
  e ENUM('small','medium','large','') NOT NULL DEFAULT 'small',
  s SET('a','b','c','d'),
  dt DATETIME(6),
  ts TIMESTAMP(6) NULL DEFAULT NULL,
  y YEAR,
  tm TIME(6),
  u UUID,
  ip INET6,
  tb TINYBLOB,
  lb LONGBLOB,
  bin BINARY(16),
  vb VARBINARY(300),
  latin VARCHAR(100) CHARACTER SET latin1 COLLATE latin1_swedish_ci,
  utf VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci,
  txt LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
  big BIGINT,
  ubig BIGINT UNSIGNED,
  dbl DOUBLE,
  pt POINT,
  secret VARCHAR(20) INVISIBLE DEFAULT 'hidden',
  `odd name ``q``` INT,
  v_len INT AS (LENGTH(utf)) VIRTUAL,
  p_up VARCHAR(100) AS (UPPER(latin)) PERSISTENT,
  KEY k_dt (dt),
  KEY k_p_up (p_up)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci AUTO_INCREMENT=1000;

INSERT INTO types (j, d, b1, b64, e, s, dt, ts, y, tm, u, ip, tb, lb, bin, vb, latin, utf, txt, big, ubig, dbl, pt, secret, `odd name ``q```) VALUES
 ('{"a": [1, 2.5, "x"], "b": null, "emoji": "\\ud83d\\ude00"}', '12345678901234567890123456789012345.123456789012345678901234567890',
  b'1', b'1111111111111111111111111111111111111111111111111111111111111111', 'large', 'a,c,d',
  '2024-02-29 23:59:59.999999', '2038-01-19 03:14:07.999999', 2155, '838:59:59.000000',
  '123e4567-e89b-12d3-a456-426614174000', '2001:db8::ff00:42:8329', x'00', x'000102030405060708090a0b0c0d0e0f5c0a0d09',
  x'00ff00ff00ff00ff00ff00ff00ff00ff', x'5c4e095c0a0d00', 'Ærøskøbing café', 'emoji 😀 🎉 𝄞 日本語', 'tab\there\nnewline\\backslash \\N',
  -9223372036854775808, 18446744073709551615, 1.7976931348623157e308, ST_GeomFromText('POINT(1.5 -2.25)'), 'set', 42),
 (NULL, '-0.000000000000000000000000000001', b'0', b'0', '', '', '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000000', 1901,
  '-838:59:59.000000', NULL, '::ffff:10.0.0.1', '', '', NULL, '', '', '', '', 0, 0, -0.5, NULL, NULL, NULL),
 ('[]', '0', NULL, NULL, 'small', NULL, NULL, NULL, NULL, '00:00:00.000001', '00000000-0000-0000-0000-000000000000', '::', NULL, NULL,
  NULL, NULL, NULL, 'N', '\\N', NULL, NULL, NULL, NULL, 'x', -1);
-- Every byte value, twice, in a BLOB.
INSERT INTO types (lb, txt) SELECT CONCAT(a, a), 'all bytes' FROM (SELECT UNHEX(GROUP_CONCAT(LPAD(HEX(seq), 2, '0') SEPARATOR '')) AS a FROM seq_0_to_255) x;
DELETE FROM types WHERE id = 1003;

CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL) ENGINE=InnoDB;
CREATE TABLE child (
  id INT AUTO_INCREMENT PRIMARY KEY,
  parent_id INT NOT NULL,
  note TEXT,
  FULLTEXT KEY ft_note (note),
  CONSTRAINT fk_child_parent FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE
) ENGINE=InnoDB;
INSERT INTO parent VALUES (0, 'zero id'), (1, 'one'), (2, 'two');
INSERT INTO child (parent_id, note) SELECT 1 + seq % 2, CONCAT('note number ', seq) FROM seq_1_to_500;

-- Secondary indexes of every form; a restore loads the table (over 1 MiB of rows) without them and
-- builds them after. The long unique key (a hash over a BLOB) stays on the table during the load,
-- the foreign key's index goes too (foreign_key_checks is off while loading).
CREATE TABLE indexed (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  parent_id INT NOT NULL,
  code VARCHAR(20) CHARACTER SET latin1 NOT NULL,
  region CHAR(2) NOT NULL,
  score DECIMAL(8,2),
  body TEXT,
  doc BLOB,
  UNIQUE KEY u_code (code),
  UNIQUE KEY `u region, score` (region, score),
  KEY k_body (body(20)) COMMENT 'prefix, with a comment',
  KEY k_score_desc (score DESC, id),
  KEY k_ignored (region) IGNORED,
  UNIQUE KEY u_doc (doc),
  CONSTRAINT fk_indexed_parent FOREIGN KEY (parent_id) REFERENCES parent (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO indexed SELECT seq, seq % 3, CONCAT('code-', seq), ELT(1 + seq % 3, 'de', 'fr', 'it'), IF(seq % 10 = 0, NULL, seq / 7),
  REPEAT(CONCAT('body ', 20000 - seq), 4), CONCAT('doc', seq) FROM seq_1_to_20000;

CREATE TABLE legacy_myisam (id INT PRIMARY KEY, body TEXT, FULLTEXT KEY ft_body (body)) ENGINE=MyISAM DEFAULT CHARSET=latin1;
INSERT INTO legacy_myisam SELECT seq, CONCAT('myisam row ', seq) FROM seq_1_to_100;
CREATE TABLE legacy_aria (id INT PRIMARY KEY, body VARCHAR(50)) ENGINE=Aria TRANSACTIONAL=1;
INSERT INTO legacy_aria SELECT seq, CONCAT('aria ', seq) FROM seq_1_to_50;

CREATE TABLE no_pk (a INT, b VARCHAR(10), c BLOB) ENGINE=InnoDB;
INSERT INTO no_pk VALUES (1, 'dup', x'00'), (1, 'dup', x'00'), (NULL, NULL, NULL), (2, '', '');

CREATE TABLE empty_table (id INT PRIMARY KEY) ENGINE=InnoDB;

CREATE TABLE parted (
  id INT NOT NULL,
  created DATE NOT NULL,
  amount DECIMAL(10,2),
  PRIMARY KEY (id, created)
) ENGINE=InnoDB
PARTITION BY RANGE (YEAR(created)) (
  PARTITION p2022 VALUES LESS THAN (2023),
  PARTITION p2023 VALUES LESS THAN (2024),
  PARTITION pmax VALUES LESS THAN MAXVALUE
);
INSERT INTO parted SELECT seq, DATE('2022-06-01') + INTERVAL seq DAY, seq * 1.25 FROM seq_1_to_900;

CREATE SEQUENCE order_seq START WITH 100 INCREMENT BY 5 MINVALUE 100 MAXVALUE 100000 CACHE 10;
SELECT NEXTVAL(order_seq), NEXTVAL(order_seq);

CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(100), at DATETIME(6)) ENGINE=InnoDB;

DELIMITER ;;
CREATE DEFINER=`root`@`localhost` FUNCTION parent_label(p INT) RETURNS VARCHAR(60) CHARSET utf8mb4
  DETERMINISTIC READS SQL DATA
BEGIN
  RETURN (SELECT CONCAT('#', id, ' ', name) FROM parent WHERE id = p);
END;;
CREATE DEFINER=`root`@`localhost` PROCEDURE add_child(IN p INT, IN n TEXT, OUT new_id INT)
  MODIFIES SQL DATA
  COMMENT 'adds a child row'
BEGIN
  INSERT INTO child (parent_id, note) VALUES (p, n);
  SET new_id = LAST_INSERT_ID();
END;;
CREATE DEFINER=`root`@`localhost` TRIGGER child_ai AFTER INSERT ON child FOR EACH ROW
  INSERT INTO audit (what, at) VALUES (CONCAT('child ', NEW.id), NOW(6));;
CREATE DEFINER=`root`@`localhost` TRIGGER child_ai_second AFTER INSERT ON child FOR EACH ROW FOLLOWS child_ai
  INSERT INTO audit (what, at) VALUES (CONCAT('second ', NEW.id), NOW(6));;
CREATE DEFINER=`root`@`localhost` TRIGGER parent_bu BEFORE UPDATE ON parent FOR EACH ROW
  SET NEW.name = TRIM(NEW.name);;
DELIMITER ;

CREATE DEFINER=`root`@`localhost` SQL SECURITY INVOKER VIEW child_view AS
  SELECT c.id, c.note, parent_label(c.parent_id) AS parent FROM child c;
CREATE VIEW child_view_count AS SELECT COUNT(*) AS n FROM child_view;
CREATE VIEW types_view AS SELECT id, utf, p_up FROM types WHERE id > 1000 WITH CHECK OPTION;

CREATE DEFINER=`root`@`localhost` EVENT nightly_cleanup ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 03:00:00'
  ON COMPLETION PRESERVE DISABLE COMMENT 'prunes the audit table'
  DO DELETE FROM audit WHERE at < NOW() - INTERVAL 30 DAY;
