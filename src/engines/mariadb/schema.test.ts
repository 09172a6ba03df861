import { describe, expect, it } from 'vitest';
import { unqualifiedTrigger } from './schema.js';

describe('unqualifiedTrigger', () => {
  it('drops the database from the trigger and table names, in every quoting', () => {
    expect(unqualifiedTrigger('CREATE TRIGGER `app`.`t1` BEFORE INSERT ON `app`.`orders` FOR EACH ROW SET NEW.a = 1')).toBe(
      'CREATE TRIGGER `t1` BEFORE INSERT ON `orders` FOR EACH ROW SET NEW.a = 1',
    );
    expect(unqualifiedTrigger('create definer=`root`@`%` trigger if not exists app.t1 after update on app.orders for each row set @x = 1')).toBe(
      'create definer=`root`@`%` trigger if not exists t1 after update on orders for each row set @x = 1',
    );
    expect(unqualifiedTrigger('CREATE TRIGGER `we``ird db` . t BEFORE DELETE ON /* c */ `we``ird db`.`o n` FOR EACH ROW BEGIN END')).toBe(
      'CREATE TRIGGER t BEFORE DELETE ON /* c */ `o n` FOR EACH ROW BEGIN END',
    );
  });

  it('leaves unqualified headers and the body untouched', () => {
    const plain = 'CREATE TRIGGER t BEFORE INSERT ON orders\n\tFOR EACH ROW INSERT INTO app.audit VALUES (NEW.id)';
    expect(unqualifiedTrigger(plain)).toBe(plain);
    const follows = "CREATE DEFINER='u'@'h' TRIGGER t2 AFTER INSERT ON orders FOR EACH ROW FOLLOWS t1 UPDATE app.x SET n = n + 1";
    expect(unqualifiedTrigger(follows)).toBe(follows);
  });
});
